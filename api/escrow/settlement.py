"""The money movements of a hold, shared by release, disputes, the project-cancel refund and the
Stripe webhook. Each runs in the caller's transaction, under the caller's locks on the project
and the hold, and appends its event; the caller sets the hold's new status."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from api.errors import Conflict
from api.escrow import repository
from api.payments import repository as payments_repository
from api.payments.provider import provider_error
from bridges.outbox import append_event
from bridges.stripe import StripeFailure, StripeGateway
from streams.escrow import EscrowRefunded, EscrowReleased, RefundReason
from streams.events import new_event
from streams.projects import ProjectStatusChanged


def refund_idempotency_key(escrow_id: uuid.UUID) -> str:
    """One key per hold: we refund a hold at most once, so a retry (after a timeout, or after
    our transaction rolled back) gets the refund Stripe already made, never a second one."""
    return f"refund-{escrow_id}"


async def pay_worker(
    conn: asyncpg.Connection,
    *,
    escrow: asyncpg.Record,
    amount_cents: int,
    fee_cents: int,
    dispute_id: uuid.UUID | None,
    actor_id: uuid.UUID,
) -> uuid.UUID:
    """Owe the worker `amount_cents - fee_cents` of the hold; the platform keeps `fee_cents`.

    Recorded as a payout 'pending_transfer': workers have no Stripe connected account to
    transfer to yet. The unique payout per hold makes a second release fail in the database
    even if a caller forgot its status check.
    """
    net_cents = amount_cents - fee_cents
    payout_id = uuid.uuid4()
    await repository.insert_payout(
        conn,
        payout_id=payout_id,
        escrow_id=escrow["id"],
        worker_id=escrow["worker_id"],
        amount_cents=net_cents,
        fee_cents=fee_cents,
        currency=escrow["currency"],
        dispute_id=dispute_id,
    )
    released = EscrowReleased(
        escrow_id=escrow["id"],
        booking_id=escrow["booking_id"],
        project_id=escrow["project_id"],
        worker_id=escrow["worker_id"],
        payout_id=payout_id,
        amount_cents=amount_cents,
        fee_cents=fee_cents,
        net_cents=net_cents,
        currency=escrow["currency"],
        dispute_id=dispute_id,
    )
    await append_event(
        conn, new_event(released, aggregate_id=escrow["project_id"], actor_id=actor_id)
    )
    return payout_id


async def refund_client(
    conn: asyncpg.Connection,
    *,
    stripe: StripeGateway,
    escrow: asyncpg.Record,
    amount_cents: int,
    reason: RefundReason,
    dispute_id: uuid.UUID | None,
    actor_id: uuid.UUID | None,
) -> uuid.UUID:
    """Give `amount_cents` of the hold back to the client's card through Stripe, and record it.

    A Stripe failure raises (503/502) so the caller's transaction rolls back whole.

    Still called under the caller's transaction and locks (project, hold, payment), unlike
    create-intent: a Stripe that hangs holds them until the gateway's deadline (~29 s with the
    default TULIFO_STRIPE_* timeouts), then answers 503. Moving the call out needs a claim on
    the hold (a 'refunding' state pinning the decided amounts) so a retry or a crash between
    Stripe and our commit settles it once; not done yet.
    """
    payment = await payments_repository.lock_payment_of_escrow(conn, escrow_id=escrow["id"])
    if payment is None or payment["status"] != "succeeded":
        raise Conflict(
            "this escrow hold has no completed payment to refund", code="NO_COMPLETED_PAYMENT"
        )
    try:
        refund = await stripe.refund(
            payment_intent_id=payment["stripe_payment_intent_id"],
            amount_cents=amount_cents,
            metadata={"escrow_id": str(escrow["id"]), "reason": reason},
            idempotency_key=refund_idempotency_key(escrow["id"]),
        )
    except StripeFailure as exc:
        raise provider_error(exc) from exc
    refund_id = uuid.uuid4()
    recorded = await repository.insert_refund(
        conn,
        refund_id=refund_id,
        payment_id=payment["id"],
        escrow_id=escrow["id"],
        stripe_refund_id=refund.id,
        amount_cents=amount_cents,
        currency=escrow["currency"],
        reason=reason,
        dispute_id=dispute_id,
        created_by=actor_id,
    )
    if not recorded:
        # The charge.refunded webhook of an earlier attempt (whose transaction rolled back after
        # Stripe refunded) recorded it as external: it is ours, say why it was made.
        refund_id = await conn.fetchval(
            """UPDATE refunds SET reason = $2, dispute_id = $3, created_by = $4
                WHERE stripe_refund_id = $1 RETURNING id""",
            refund.id,
            reason,
            dispute_id,
            actor_id,
        )
    await append_refunded(
        conn,
        escrow=escrow,
        refund_id=refund_id,
        amount_cents=amount_cents,
        reason=reason,
        dispute_id=dispute_id,
        actor_id=actor_id,
    )
    return refund_id


async def refund_cancelled(
    conn: asyncpg.Connection,
    *,
    stripe: StripeGateway,
    escrow: asyncpg.Record,
    actor_id: uuid.UUID | None,
) -> None:
    """A cancelled project's hold goes back to the client in full, and the hold is done."""
    await refund_client(
        conn,
        stripe=stripe,
        escrow=escrow,
        amount_cents=escrow["amount_cents"],
        reason="cancellation",
        dispute_id=None,
        actor_id=actor_id,
    )
    await repository.set_escrow_status(conn, escrow_id=escrow["id"], status="refunded")


async def append_refunded(
    conn: asyncpg.Connection,
    *,
    escrow: asyncpg.Record,
    refund_id: uuid.UUID,
    amount_cents: int,
    reason: RefundReason,
    dispute_id: uuid.UUID | None,
    actor_id: uuid.UUID | None,
) -> None:
    refunded = EscrowRefunded(
        escrow_id=escrow["id"],
        booking_id=escrow["booking_id"],
        project_id=escrow["project_id"],
        client_id=escrow["client_id"],
        refund_id=refund_id,
        amount_cents=amount_cents,
        currency=escrow["currency"],
        reason=reason,
        dispute_id=dispute_id,
    )
    await append_event(
        conn, new_event(refunded, aggregate_id=escrow["project_id"], actor_id=actor_id)
    )


async def move_project(
    conn: asyncpg.Connection,
    *,
    project: asyncpg.Record | dict[str, Any],
    to_status: str,
    actor_id: uuid.UUID,
) -> None:
    """Set a locked project's status and say so on `project.status_changed`, so the project
    read models follow the moves money makes (release, dispute, resolution)."""
    await repository.set_project_status(conn, project_id=project["id"], status=to_status)
    changed = ProjectStatusChanged(
        project_id=project["id"],
        client_id=project["client_id"],
        worker_id=project["worker_id"],
        from_status=project["status"],
        to_status=to_status,
    )
    await append_event(conn, new_event(changed, aggregate_id=project["id"], actor_id=actor_id))
