"""The money movements of a hold, shared by release, disputes, the project-cancel refund and the
Stripe webhook. Each runs in the caller's transaction, under the caller's locks on the project
and the hold, and appends its event; the caller moves the hold (repository.move_hold). Nothing here
calls Stripe: a refund is made with nothing held (api/escrow/refunds.py) and recorded here after."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from api.escrow import repository
from api.projects import repository as projects
from api.projects.lifecycle import Actor, How
from bridges.outbox import append_event
from streams.escrow import EscrowRefunded, EscrowReleased, RefundReason
from streams.events import new_event
from streams.projects import ProjectStatusChanged


async def pay_worker(
    conn: asyncpg.Connection,
    *,
    escrow: asyncpg.Record,
    amount_cents: int,
    fee_cents: int,
    dispute_id: uuid.UUID | None,
    # None: the platform itself (a release the review window made, api/escrow/service.py).
    actor_id: uuid.UUID | None,
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
    actor: Actor,
    how: How,
    actor_id: uuid.UUID | None,
) -> None:
    """Move a locked project on from the status it was read in, and say so on
    `project.status_changed`, so the project read models follow the moves money makes (release,
    dispute, resolution). The move must be in api/projects/lifecycle.py."""
    await projects.move_status(
        conn,
        project_id=project["id"],
        source=project["status"],
        target=to_status,
        actor=actor,
        how=how,
    )
    changed = ProjectStatusChanged(
        project_id=project["id"],
        client_id=project["client_id"],
        worker_id=project["worker_id"],
        from_status=project["status"],
        to_status=to_status,
    )
    await append_event(conn, new_event(changed, aggregate_id=project["id"], actor_id=actor_id))
