"""Escrow holds: reading one, releasing it to the worker, refunding it when a project is cancelled.

unfunded ─payment succeeded (webhook)─▶ funded ─client releases─▶ released
                                          │ ─project cancelled─▶ refunding ─▶ refunded
                                          └─dispute opened─▶ frozen ─admin resolves─▶
                                                  released | refunding ─▶ refunded | split

'refunding': a refund is pinned and being made at Stripe with nothing held
(api/escrow/refunds.py); Stripe refusing it puts the hold back to funded or frozen.
"""

from __future__ import annotations

import uuid
from typing import Final

import asyncpg

from api.auth.schemas import AuthenticatedUser
from api.errors import Conflict, Forbidden, NotFound
from api.escrow import refunds, repository, settlement
from api.escrow.schemas import (
    EscrowOut,
    PaymentAttemptOut,
    PayoutMovementOut,
    PayoutOut,
    RefundOut,
)
from api.projects.access import sees_the_deal
from bridges.stripe import StripeGateway
from infrastructure.database import unit_of_work

# A client may release once the worker delivered, or after accepting the delivery through
# PUT /api/projects/{id}/status (delivered→completed), which leaves the money held.
RELEASABLE_PROJECT_STATUSES: Final = frozenset({"delivered", "completed"})
ESCROW_NOT_FOUND: Final = "escrow hold not found"


async def get_escrow(
    *, pool: asyncpg.Pool, user: AuthenticatedUser, escrow_id: uuid.UUID
) -> EscrowOut:
    """A hold with its payments, payouts and refunds, for its client, its worker and admins;
    404 for anyone else."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        # One snapshot: a release or refund committing between the reads cannot show a
        # 'released' hold without its payout.
        record = await repository.fetch_escrow_view(conn, escrow_id=escrow_id)
        # The same answer as for a hold that does not exist, so an id is not confirmed.
        if record is None or not sees_the_deal(record, user):
            raise NotFound(ESCROW_NOT_FOUND)
        return await _with_movements(conn, record)


async def release_escrow(
    *, pool: asyncpg.Pool, user: AuthenticatedUser, escrow_id: uuid.UUID
) -> EscrowOut:
    """Pay the worker the hold's net, keep the fee; the project becomes completed.

    Under the project and hold locks, so of concurrent releases exactly one finds the hold
    funded; the others find it released and get a 409.
    """
    async with unit_of_work(pool) as conn:
        project_id = await repository.project_of_escrow(conn, escrow_id=escrow_id)
        if project_id is None:
            raise NotFound(ESCROW_NOT_FOUND)
        project = await repository.lock_project(conn, project_id=project_id)
        escrow = await repository.lock_escrow(conn, escrow_id=escrow_id)
        assert project is not None and escrow is not None  # foreign keys, and holds are kept
        if escrow["client_id"] != user.id:
            if user.id != escrow["worker_id"] and user.role != "admin":
                raise NotFound(ESCROW_NOT_FOUND)  # outsiders learn nothing of which ids exist
            raise Forbidden("only the booking's client may release its escrow")
        require_status(escrow, "funded", action="released")
        if project["status"] not in RELEASABLE_PROJECT_STATUSES:
            raise Conflict(
                f"the project is {project['status']}: the escrow is released once the work "
                "is delivered",
                code="PROJECT_NOT_DELIVERED",
                details={"projectStatus": project["status"]},
            )
        await settlement.pay_worker(
            conn,
            escrow=escrow,
            amount_cents=escrow["amount_cents"],
            fee_cents=escrow["fee_cents"],
            dispute_id=None,
            actor_id=user.id,
        )
        await repository.move_hold(
            conn, escrow_id=escrow_id, source="funded", target="released", actor="client"
        )
        if project["status"] == "delivered":
            await settlement.move_project(
                conn,
                project=project,
                to_status="completed",
                actor="client",
                how="release_escrow",
                actor_id=user.id,
            )
        view = await repository.fetch_escrow_view(conn, escrow_id=escrow_id)
        assert view is not None
        return await _with_movements(conn, view)


async def release_after_review_window(
    *, pool: asyncpg.Pool, project_id: uuid.UUID, delivery_event_id: uuid.UUID
) -> str | None:
    """The client did not answer the delivery `delivery_event_id` (a `project.delivered`) within
    the review window: release the hold for them, exactly as their own release would (the same
    payout, `escrow.released`, project completed), with the platform as the actor.

    Nothing happens, and the reason is returned, when the answer came after all: the project is
    no longer delivered (changes requested, disputed, completed), a later delivery replaced this
    one (it has a window of its own), or the hold is not funded (released, frozen, refunded).
    Under the same locks as `release_escrow`, so it and a client's release never both pay."""
    async with unit_of_work(pool) as conn:
        project = await repository.lock_project(conn, project_id=project_id)
        if project is None:
            return "the project does not exist"
        escrow = await repository.lock_escrow_of_project(conn, project_id=project_id)
        if project["status"] != "delivered":
            return f"the project is {project['status']}, not delivered"
        # The project's events in the event store (outbox_stream_sequence index): its last
        # delivery is the one the client has yet to answer.
        latest = await conn.fetchval(
            """SELECT event_id FROM outbox
                WHERE stream = 'gigs' AND key = $1 AND event_type = 'project.delivered'
                ORDER BY sequence DESC LIMIT 1""",
            str(project_id),
        )
        if latest != delivery_event_id:
            return "a later delivery has its own review window"
        if escrow is None or escrow["status"] != "funded":
            return f"the escrow is {escrow['status'] if escrow else 'missing'}, not funded"
        await settlement.pay_worker(
            conn,
            escrow=escrow,
            amount_cents=escrow["amount_cents"],
            fee_cents=escrow["fee_cents"],
            dispute_id=None,
            actor_id=None,
        )
        await repository.move_hold(
            conn, escrow_id=escrow["id"], source="funded", target="released", actor="system"
        )
        # The project's own move stays the client's: their silence through the window is their
        # acceptance of the delivery (api/projects/lifecycle.py has no platform move there).
        await settlement.move_project(
            conn,
            project=project,
            to_status="completed",
            actor="client",
            how="release_escrow",
            actor_id=None,
        )
    return None


async def claim_cancellation_refund(
    conn: asyncpg.Connection, *, project_id: uuid.UUID, actor_id: uuid.UUID | None
) -> uuid.UUID | None:
    """Pin the full refund of a cancelled project's held money, in the canceller's transaction
    under the project's row lock; the hold to `settle_refund` once it commits, or None when
    nothing is held (unfunded, or already refunded).

    No fee is kept on a cancellation. A frozen hold (open dispute) is a 409. A hold whose
    cancellation refund is already pinned (an earlier call met a Stripe outage) is returned as
    it is, so the repeated call finishes it; one pinned by a dispute is a 409."""
    escrow = await repository.lock_escrow_of_project(conn, project_id=project_id)
    if escrow is None or escrow["status"] in ("unfunded", "refunded"):
        return None
    if escrow["status"] == "refunding":
        claim = await refunds.pending_claim(conn, escrow_id=escrow["id"])
        assert claim is not None
        if claim["purpose"] == "dispute":
            raise refunds.in_progress(claim)
        held: uuid.UUID = escrow["id"]
        return held
    require_status(escrow, "funded", action="refunded")
    await refunds.claim_refund(
        conn,
        escrow=escrow,
        purpose="cancel_project",
        amount_cents=escrow["amount_cents"],
        actor_id=actor_id,
    )
    claimed: uuid.UUID = escrow["id"]
    return claimed


async def refund_for_cancellation(
    pool: asyncpg.Pool,
    *,
    stripe: StripeGateway,
    project_id: uuid.UUID,
    actor_id: uuid.UUID | None,
) -> None:
    """Give the money held for a project that is already cancelled back to the client, in full.

    A short transaction pins the refund, Stripe is called with nothing held, a second one records
    it (`escrow.refunded`) and the hold becomes 'refunded'. An unfunded or refunded hold needs
    nothing; a frozen one is a 409. A Stripe outage raises a 503 and leaves the refund pinned:
    calling again, or `retry_pending_refunds`, finishes it."""
    async with unit_of_work(pool) as conn:
        await repository.lock_project(conn, project_id=project_id)
        escrow = await repository.lock_escrow_of_project(conn, project_id=project_id)
        if escrow is None or escrow["status"] in ("unfunded", "refunded"):
            return
        if escrow["status"] == "refunding":
            claim = await refunds.pending_claim(conn, escrow_id=escrow["id"])
            assert claim is not None
            if claim["purpose"] != "cancelled_payment":
                raise refunds.in_progress(claim)
        else:
            require_status(escrow, "funded", action="refunded")
            await refunds.claim_refund(
                conn,
                escrow=escrow,
                purpose="cancelled_payment",
                amount_cents=escrow["amount_cents"],
                actor_id=actor_id,
            )
    await settle_refund(
        pool=pool, stripe=stripe, escrow_id=escrow["id"], finish=finish_cancelled_payment_refund
    )


async def settle_refund(
    *, pool: asyncpg.Pool, stripe: StripeGateway, escrow_id: uuid.UUID, finish: refunds.Finish
) -> bool:
    """The Stripe call and the recording of a pinned refund (api/escrow/refunds.py `settle`)."""
    return await refunds.settle(pool=pool, stripe=stripe, escrow_id=escrow_id, finish=finish)


async def finish_cancelled_payment_refund(
    conn: asyncpg.Connection,
    claim: asyncpg.Record,
    project: asyncpg.Record,
    escrow: asyncpg.Record,
    refund_id: uuid.UUID,
) -> None:
    """A cancellation's refund made: the hold is refunded, with its `escrow.refunded`. All there
    is to do for a payment that landed after its project was cancelled; a cancellation that
    waited for its refund (api/projects/service.py) cancels the project after it."""
    await settlement.append_refunded(
        conn,
        escrow=escrow,
        refund_id=refund_id,
        amount_cents=claim["amount_cents"],
        reason="cancellation",
        dispute_id=None,
        actor_id=claim["actor_id"],
    )
    await repository.move_hold(
        conn, escrow_id=escrow["id"], source="refunding", target="refunded", actor="system"
    )


def require_status(escrow: asyncpg.Record, expected: str, *, action: str) -> None:
    """409 with a code saying why a hold in its current status cannot be `action`."""
    status: str = escrow["status"]
    if status == expected:
        return
    details = {"escrowStatus": status}
    if status == "frozen":
        raise Conflict(
            f"the escrow is frozen by an open dispute and cannot be {action}; "
            "an admin resolves the dispute",
            code="ESCROW_FROZEN",
            details=details,
        )
    if status == "unfunded":
        raise Conflict(
            f"the escrow is not funded yet and cannot be {action}",
            code="ESCROW_NOT_FUNDED",
            details=details,
        )
    if status in ("released", "refunded", "split"):
        raise Conflict(
            f"the escrow was already {status}; it cannot be {action}",
            code="ESCROW_SETTLED",
            details=details,
        )
    if status == "refunding":
        raise Conflict(
            f"a refund of the escrow is in progress; it cannot be {action}",
            code="REFUND_IN_PROGRESS",
            details=details,
        )
    raise Conflict(f"the escrow is {status}", code="ESCROW_STATE", details=details)


async def _with_movements(conn: asyncpg.Connection, record: asyncpg.Record) -> EscrowOut:
    """The hold's view (a `fetch_escrow_view` record) with the lists of its money movements."""
    payments = await repository.payments_of_escrow(conn, escrow_id=record["id"])
    payouts = await repository.payouts_of_escrow(conn, escrow_id=record["id"])
    refunds = await repository.refunds_of_escrow(conn, escrow_id=record["id"])
    return escrow_out(
        record,
        payments=[
            PaymentAttemptOut(
                id=row["id"],
                payment_intent_id=row["stripe_payment_intent_id"],
                amount_cents=row["amount_cents"],
                fee_cents=row["fee_cents"],
                net_cents=row["net_cents"],
                refunded_cents=row["refunded_cents"],
                currency=row["currency"],
                status=row["status"],
                failure_code=row["failure_code"],
                failure_message=row["failure_message"],
                succeeded_at=row["succeeded_at"],
                created_at=row["created_at"],
                updated_at=row["updated_at"],
            )
            for row in payments
        ],
        payouts=[
            PayoutMovementOut(
                id=row["id"],
                amount_cents=row["amount_cents"],
                fee_cents=row["fee_cents"],
                status=row["status"],
                currency=row["currency"],
                dispute_id=row["dispute_id"],
                created_at=row["created_at"],
                updated_at=row["updated_at"],
            )
            for row in payouts
        ],
        refunds=[
            RefundOut(
                id=row["id"],
                payment_id=row["payment_id"],
                amount_cents=row["amount_cents"],
                currency=row["currency"],
                reason=row["reason"],
                dispute_id=row["dispute_id"],
                created_at=row["created_at"],
            )
            for row in refunds
        ],
    )


def escrow_out(
    record: asyncpg.Record,
    *,
    payments: list[PaymentAttemptOut],
    payouts: list[PayoutMovementOut],
    refunds: list[RefundOut],
) -> EscrowOut:
    payout = None
    if record["payout_id"] is not None:
        payout = PayoutOut(
            id=record["payout_id"],
            amount_cents=record["payout_amount_cents"],
            fee_cents=record["payout_fee_cents"],
            status=record["payout_status"],
        )
    return EscrowOut(
        id=record["id"],
        booking_id=record["booking_id"],
        project_id=record["project_id"],
        client_id=record["client_id"],
        worker_id=record["worker_id"],
        amount_cents=record["amount_cents"],
        fee_cents=record["fee_cents"],
        net_cents=record["net_cents"],
        currency=record["currency"],
        status=record["status"],
        payment_id=record["payment_id"],
        payment_status=record["payment_status"],
        refunded_cents=record["refunded_cents"],
        payout=payout,
        payments=payments,
        payouts=payouts,
        refunds=refunds,
        funded_at=record["funded_at"],
        released_at=record["released_at"],
        refunded_at=record["refunded_at"],
        created_at=record["created_at"],
        updated_at=record["updated_at"],
    )
