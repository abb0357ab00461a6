"""Refunds of ours, made with no database connection or row lock held while Stripe is called.

A Stripe that hangs would otherwise hold the project, hold and payment locks and a pooled
connection for as long, and stall requests that never touch Stripe (as create-intent learned,
api/payments/service.py). So a refund is three steps:

1. the caller's short transaction decides, and `claim_refund` pins the decision: the hold moves
   to 'refunding' and a `refund_claims` row fixes the amount, the idempotency key and what the
   refund finishes (a dispute's resolution, a cancellation); it commits with the decision;
2. `settle` calls Stripe with nothing held;
3. a short transaction records the refund and lets the caller's `finish` write the end states
   and the outbox events, conditional on the claim still being pending.

A Stripe that does not answer leaves the claim pending and is a 503 with Retry-After: repeating
the request (resolve, cancel, the webhook's redelivery) or `retry_pending_refunds` sends the
same refund under the same key, which Stripe answers with the refund a lost try made, never a
second one. A refusal is recorded, the hold goes back to where it was, and the caller gets a
409 REFUND_REFUSED; a later decision takes a new key, since Stripe replays a refusal under its
key. Two calls settling one claim at once both reach Stripe under one key; only the first to
record it finishes it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Final, Literal

import asyncpg

from api.errors import Conflict, TulifoError
from api.escrow import repository
from api.payments import repository as payments_repository
from api.payments.provider import provider_error
from api.projects.lifecycle import Actor
from bridges.stripe import Refund, StripeFailure, StripeGateway
from infrastructure.database import unit_of_work
from streams.escrow import RefundReason

log = logging.getLogger(__name__)

Purpose = Literal["dispute", "cancel_project", "cancelled_payment"]
_REASON: Final[dict[str, RefundReason]] = {
    "dispute": "dispute",
    "cancel_project": "cancellation",
    "cancelled_payment": "cancellation",
}
# Whose decision pins the refund (api/escrow/lifecycle.py): the client cancelling, an admin's
# resolution, or the platform giving back a payment that landed on a cancelled project.
_CLAIMED_BY: Final[dict[Purpose, Actor]] = {
    "dispute": "admin",
    "cancel_project": "client",
    "cancelled_payment": "system",
}

# Records the end states and events of a recorded refund: (conn, claim, project, hold, refund id),
# under the project, hold and claim locks.
Finish = Callable[
    [asyncpg.Connection, asyncpg.Record, asyncpg.Record, asyncpg.Record, uuid.UUID],
    Awaitable[None],
]


def refund_idempotency_key(escrow_id: uuid.UUID, attempt: int = 1) -> str:
    """One key per hold: we refund a hold at most once, so a retry (after a timeout, or a crash
    before the refund was recorded) gets the refund Stripe already made. A new key only for the
    decision taken after Stripe refused the last one."""
    return f"refund-{escrow_id}" if attempt == 1 else f"refund-{escrow_id}-{attempt}"


async def claim_refund(
    conn: asyncpg.Connection,
    *,
    escrow: asyncpg.Record,
    purpose: Purpose,
    amount_cents: int,
    actor_id: uuid.UUID | None,
    dispute_id: uuid.UUID | None = None,
    resolution: str | None = None,
    worker_amount_cents: int | None = None,
    fee_cents: int | None = None,
    note: str | None = None,
) -> None:
    """Pin a refund of a 'funded' or 'frozen' hold, under the caller's project and hold locks;
    the hold becomes 'refunding' until `settle` records it (or Stripe refuses it)."""
    payment = await payments_repository.lock_payment_of_escrow(conn, escrow_id=escrow["id"])
    if payment is None or payment["status"] != "succeeded":
        raise Conflict(
            "this escrow hold has no completed payment to refund", code="NO_COMPLETED_PAYMENT"
        )
    claimed = await conn.fetchval(
        """INSERT INTO refund_claims AS c (escrow_id, payment_id, purpose, status, amount_cents,
                  currency, idempotency_key, previous_status, actor_id, dispute_id, resolution,
                  worker_amount_cents, fee_cents, note)
           VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
           ON CONFLICT (escrow_id) DO UPDATE
              SET payment_id = EXCLUDED.payment_id, purpose = EXCLUDED.purpose,
                  status = 'pending', amount_cents = EXCLUDED.amount_cents,
                  attempts = c.attempts + 1,
                  idempotency_key = EXCLUDED.idempotency_key || '-' || (c.attempts + 1),
                  previous_status = EXCLUDED.previous_status, actor_id = EXCLUDED.actor_id,
                  dispute_id = EXCLUDED.dispute_id, resolution = EXCLUDED.resolution,
                  worker_amount_cents = EXCLUDED.worker_amount_cents,
                  fee_cents = EXCLUDED.fee_cents, note = EXCLUDED.note, last_error = NULL,
                  updated_at = now()
            WHERE c.status = 'refused'
           RETURNING true""",
        escrow["id"],
        payment["id"],
        purpose,
        amount_cents,
        escrow["currency"],
        refund_idempotency_key(escrow["id"]),
        escrow["status"],
        actor_id,
        dispute_id,
        resolution,
        worker_amount_cents,
        fee_cents,
        note,
    )
    # Callers claim only a funded or frozen hold, under its lock: a pending claim would have
    # left it 'refunding', a recorded one 'refunded' or 'split'.
    assert claimed, f"escrow {escrow['id']} already has a refund claim in place"
    await repository.move_hold(
        conn,
        escrow_id=escrow["id"],
        source=escrow["status"],
        target="refunding",
        actor=_CLAIMED_BY[purpose],
    )


async def pending_claim(conn: asyncpg.Connection, *, escrow_id: uuid.UUID) -> asyncpg.Record | None:
    record: asyncpg.Record | None = await conn.fetchrow(
        "SELECT * FROM refund_claims WHERE escrow_id = $1 AND status = 'pending'", escrow_id
    )
    return record


def in_progress(claim: asyncpg.Record) -> Conflict:
    """The answer to a request that would decide otherwise while a refund is pinned."""
    return Conflict(
        "a refund of this escrow hold is in progress; repeat the request that started it",
        code="REFUND_IN_PROGRESS",
        details={
            "purpose": claim["purpose"],
            "amountCents": claim["amount_cents"],
            "disputeId": None if claim["dispute_id"] is None else str(claim["dispute_id"]),
        },
    )


async def settle(
    *, pool: asyncpg.Pool, stripe: StripeGateway, escrow_id: uuid.UUID, finish: Finish
) -> bool:
    """Make the hold's pinned refund at Stripe and record it; True when this call recorded it,
    False when there was nothing pending (another call recorded it first). Call it holding no
    connection. A Stripe outage raises a 503, a refusal a 409 REFUND_REFUSED."""
    async with pool.acquire() as conn:
        claim = await conn.fetchrow(
            """SELECT c.*, p.stripe_payment_intent_id
                 FROM refund_claims c JOIN payments p ON p.id = c.payment_id
                WHERE c.escrow_id = $1 AND c.status = 'pending'""",
            escrow_id,
        )
    if claim is None:
        return False
    try:
        refund = await stripe.refund(
            payment_intent_id=claim["stripe_payment_intent_id"],
            amount_cents=claim["amount_cents"],
            metadata={"escrow_id": str(escrow_id), "reason": _REASON[claim["purpose"]]},
            idempotency_key=claim["idempotency_key"],
        )
    except StripeFailure as exc:
        await _failed(pool, claim, exc)
        if exc.retryable:
            raise provider_error(exc) from exc
        raise Conflict(
            "the payment provider refused the refund; nothing was refunded or changed",
            code="REFUND_REFUSED",
            details={"providerCode": exc.code},
        ) from exc
    return await _record(pool, claim, refund, finish)


async def _failed(pool: asyncpg.Pool, claim: asyncpg.Record, exc: StripeFailure) -> None:
    error = exc.code or str(exc)
    async with unit_of_work(pool) as conn:
        project = await repository.project_of_escrow(conn, escrow_id=claim["escrow_id"])
        assert project is not None
        await repository.lock_project(conn, project_id=project)
        escrow = await repository.lock_escrow(conn, escrow_id=claim["escrow_id"])
        # Conditional on the claim we read: a call that recorded it meanwhile wins.
        if exc.retryable:
            await conn.execute(
                """UPDATE refund_claims SET last_error = $3, updated_at = now()
                    WHERE escrow_id = $1 AND idempotency_key = $2 AND status = 'pending'""",
                claim["escrow_id"],
                claim["idempotency_key"],
                error,
            )
            log.warning(
                "refund of escrow %s not made yet: %s; will retry", claim["escrow_id"], error
            )
            return
        refused = await conn.fetchval(
            """UPDATE refund_claims SET status = 'refused', last_error = $3, updated_at = now()
                WHERE escrow_id = $1 AND idempotency_key = $2 AND status = 'pending'
               RETURNING true""",
            claim["escrow_id"],
            claim["idempotency_key"],
            error,
        )
        if refused and escrow is not None and escrow["status"] == "refunding":
            # Nothing was refunded: the hold is as it was before the decision, for another one.
            await repository.move_hold(
                conn,
                escrow_id=claim["escrow_id"],
                source="refunding",
                target=claim["previous_status"],
                actor="system",
            )
            log.error("Stripe refused the refund of escrow %s: %s", claim["escrow_id"], error)


async def _record(
    pool: asyncpg.Pool, claim: asyncpg.Record, refund: Refund, finish: Finish
) -> bool:
    escrow_id: uuid.UUID = claim["escrow_id"]
    async with unit_of_work(pool) as conn:
        project_id = await repository.project_of_escrow(conn, escrow_id=escrow_id)
        assert project_id is not None
        project = await repository.lock_project(conn, project_id=project_id)
        escrow = await repository.lock_escrow(conn, escrow_id=escrow_id)
        locked = await conn.fetchrow(
            """SELECT * FROM refund_claims
                WHERE escrow_id = $1 AND idempotency_key = $2 AND status = 'pending'
                FOR UPDATE""",
            escrow_id,
            claim["idempotency_key"],
        )
        if locked is None:
            return False
        assert project is not None and escrow is not None and escrow["status"] == "refunding"
        reason = _REASON[locked["purpose"]]
        refund_id = uuid.uuid4()
        recorded = await repository.insert_refund(
            conn,
            refund_id=refund_id,
            payment_id=locked["payment_id"],
            escrow_id=escrow_id,
            stripe_refund_id=refund.id,
            amount_cents=locked["amount_cents"],
            currency=locked["currency"],
            reason=reason,
            dispute_id=locked["dispute_id"],
            created_by=locked["actor_id"],
        )
        if not recorded:
            # A charge.refunded webhook seen before this transaction recorded it as external:
            # it is ours, say why it was made.
            refund_id = await conn.fetchval(
                """UPDATE refunds SET reason = $2, dispute_id = $3, created_by = $4
                    WHERE stripe_refund_id = $1 RETURNING id""",
                refund.id,
                reason,
                locked["dispute_id"],
                locked["actor_id"],
            )
        await conn.execute(
            """UPDATE refund_claims SET status = 'refunded', stripe_refund_id = $2,
                      last_error = NULL, updated_at = now()
                WHERE escrow_id = $1""",
            escrow_id,
            refund.id,
        )
        await finish(conn, locked, project, escrow, refund_id)
    return True


async def retry_pending_refunds(
    *, pool: asyncpg.Pool, stripe: StripeGateway, limit: int = 100
) -> int:
    """Settle the refunds a Stripe outage left pending, oldest first; how many are now settled
    (recorded, or refused and so given back to a new decision)."""
    # Imported here: disputes and projects depend on escrow, not the other way round.
    from api.disputes.service import finish_dispute_refund
    from api.escrow.service import finish_cancelled_payment_refund
    from api.projects.service import finish_cancellation_refund

    finishers: dict[str, Finish] = {
        "dispute": finish_dispute_refund,
        "cancel_project": finish_cancellation_refund,
        "cancelled_payment": finish_cancelled_payment_refund,
    }
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT escrow_id, purpose FROM refund_claims WHERE status = 'pending'
                ORDER BY updated_at LIMIT $1""",
            limit,
        )
    settled = 0
    for row in rows:
        try:
            await settle(
                pool=pool,
                stripe=stripe,
                escrow_id=row["escrow_id"],
                finish=finishers[row["purpose"]],
            )
        except TulifoError as exc:
            if exc.status_code == 503:
                continue  # still unreachable: left for the next round
            settled += 1  # refused: recorded, and the hold is back for another decision
        else:
            settled += 1
    return settled
