"""Disputes: a participant freezes the held money; an admin releases, refunds or splits it.

Only a funded hold can be disputed: with nothing held there is nothing for an admin to award,
and the client can simply cancel the project. Opening freezes the hold (funded→frozen) and
moves the project to 'disputed'; resolving settles the hold and ends the project: completed
after release or split, cancelled after a full refund.
"""

from __future__ import annotations

import uuid
from typing import Final, NoReturn

import asyncpg

from api.auth.schemas import AuthenticatedUser
from api.disputes import repository
from api.disputes.schemas import (
    DisputeItem,
    DisputeOut,
    DisputePage,
    EvidenceItem,
    OpenDisputeRequest,
    OpenerOut,
    Resolution,
    ResolveDisputeRequest,
)
from api.errors import Conflict, Forbidden, Invalid, NotFound
from api.escrow import refunds, settlement
from api.escrow import repository as escrow_repository
from api.escrow.service import require_status
from api.money import platform_fee
from api.pagination import Cursor, split_page
from api.projects import implied
from api.projects.access import sees_the_deal
from api.projects.lifecycle import Party
from bridges.outbox import append_event
from bridges.stripe import StripeGateway
from infrastructure.database import unit_of_work
from streams.disputes import DisputeOpened, DisputeResolved
from streams.events import new_event

# 'completed' too: a client may accept the delivery and still hold the money back.
DISPUTABLE_PROJECT_STATUSES: Final = frozenset({"awarded", "in_progress", "delivered", "completed"})
_ESCROW_AFTER: Final = {"release": "released", "refund": "refunded", "split": "split"}
_PROJECT_AFTER: Final = {"release": "completed", "refund": "cancelled", "split": "completed"}


async def open_dispute(
    *, pool: asyncpg.Pool, user: AuthenticatedUser, body: OpenDisputeRequest
) -> DisputeOut:
    async with unit_of_work(pool) as conn:
        project_id = body.project_id or await implied.project_to_dispute(
            conn, user_id=user.id, statuses=DISPUTABLE_PROJECT_STATUSES
        )
        project = await escrow_repository.lock_project(conn, project_id=project_id)
        if project is None:
            raise NotFound("project not found")
        if user.id not in (project["client_id"], project["worker_id"]):
            if user.role != "admin":
                raise NotFound("project not found")  # as for no such project: see get_dispute
            raise Forbidden("only the project's client and worker may open a dispute")
        if project["status"] == "disputed":
            raise Conflict("a dispute is already open on this project", code="DISPUTE_OPEN")
        if project["status"] not in DISPUTABLE_PROJECT_STATUSES:
            raise Conflict(
                f"a {project['status']} project cannot be disputed",
                code="PROJECT_NOT_DISPUTABLE",
                details={"projectStatus": project["status"]},
            )
        escrow = await escrow_repository.lock_escrow_of_project(conn, project_id=project["id"])
        if escrow is None or escrow["status"] != "funded":
            raise Conflict(
                "no money is held for this project; the client can cancel it instead",
                code="ESCROW_NOT_FUNDED",
                details={"escrowStatus": escrow["status"] if escrow else None},
            )
        dispute_id = uuid.uuid4()
        await repository.insert_dispute(
            conn,
            dispute_id=dispute_id,
            project_id=project["id"],
            escrow_id=escrow["id"],
            opened_by=user.id,
            reason=body.reason,
            evidence=[item.model_dump(mode="json") for item in body.evidence],
            previous_project_status=project["status"],
        )
        party: Party = "client" if user.id == project["client_id"] else "worker"
        await escrow_repository.move_hold(
            conn, escrow_id=escrow["id"], source="funded", target="frozen", actor=party
        )
        await settlement.move_project(
            conn,
            project=project,
            to_status="disputed",
            actor=party,
            how="open_dispute",
            actor_id=user.id,
        )
        opened = DisputeOpened(
            dispute_id=dispute_id,
            project_id=project["id"],
            escrow_id=escrow["id"],
            client_id=escrow["client_id"],
            worker_id=escrow["worker_id"],
            opened_by=user.id,
            reason=body.reason,
            evidence_count=len(body.evidence),
            previous_project_status=project["status"],
            amount_cents=escrow["amount_cents"],
            currency=escrow["currency"],
        )
        await append_event(conn, new_event(opened, aggregate_id=project["id"], actor_id=user.id))
        record = await repository.fetch_dispute(conn, dispute_id=dispute_id)
    assert record is not None
    return dispute_out(record)


async def get_dispute(
    *, pool: asyncpg.Pool, user: AuthenticatedUser, dispute_id: uuid.UUID
) -> DisputeOut:
    async with pool.acquire() as conn:
        record = await repository.fetch_dispute(conn, dispute_id=dispute_id)
    if record is None:
        raise NotFound("dispute not found")
    if not sees_the_deal(record, user):
        # The same answer as for no such dispute: an outsider must not learn which ids exist.
        raise NotFound("dispute not found")
    return dispute_out(record)


async def list_disputes(
    *, pool: asyncpg.Pool, status: str | None, cursor: Cursor | None, limit: int
) -> DisputePage:
    """Every dispute (an admin's queue), newest first, optionally of one status."""
    async with pool.acquire() as conn:
        rows = await repository.disputes_page(conn, status=status, cursor=cursor, limit=limit)
    page, next_cursor = split_page(rows, limit=limit)
    return DisputePage(
        items=[
            DisputeItem(
                id=row["id"],
                project_id=row["project_id"],
                project_title=row["project_title"],
                escrow_id=row["escrow_id"],
                escrow_status=row["escrow_status"],
                amount_cents=row["amount_cents"],
                currency=row["currency"],
                opened_by=OpenerOut(id=row["opened_by"], name=row["opened_by_name"]),
                reason=row["reason"],
                status=row["status"],
                resolution=row["resolution"],
                worker_amount_cents=row["worker_amount_cents"],
                client_amount_cents=row["client_amount_cents"],
                fee_cents=row["fee_cents"],
                resolved_by=row["resolved_by"],
                resolved_at=row["resolved_at"],
                created_at=row["created_at"],
            )
            for row in page
        ],
        next_cursor=next_cursor,
    )


async def resolve_dispute(
    *,
    pool: asyncpg.Pool,
    stripe: StripeGateway,
    admin: AuthenticatedUser,
    dispute_id: uuid.UUID,
    body: ResolveDisputeRequest,
) -> DisputeOut:
    """Settle the frozen hold as the admin decided.

    A release settles in one transaction. A refund or a split gives money back through Stripe,
    called with nothing held (api/escrow/refunds.py): the decision is pinned first (the hold
    becomes 'refunding'), and the whole resolution is recorded once Stripe refunded. If Stripe
    does not answer, the answer is a 503 and the dispute stays open with its decision pinned:
    the same request again finishes it; another decision is a 409 REFUND_IN_PROGRESS. If Stripe
    refuses, nothing is settled and the hold is frozen again (409 REFUND_REFUSED)."""
    async with unit_of_work(pool) as conn:
        found = await repository.fetch_dispute(conn, dispute_id=dispute_id)
        if found is None:
            raise NotFound("dispute not found")
        project = await escrow_repository.lock_project(conn, project_id=found["project_id"])
        escrow = await escrow_repository.lock_escrow(conn, escrow_id=found["escrow_id"])
        dispute = await repository.fetch_dispute(conn, dispute_id=dispute_id, for_update=True)
        assert project is not None and escrow is not None and dispute is not None
        if dispute["status"] != "open":
            raise Conflict(
                f"the dispute was already resolved ({dispute['resolution']})",
                code="DISPUTE_RESOLVED",
            )
        if escrow["status"] == "refunding":
            claim = await refunds.pending_claim(conn, escrow_id=escrow["id"])
            assert claim is not None
            worker_cents, client_cents = _parts(body, held=escrow["amount_cents"])
            decided = (claim["resolution"], claim["worker_amount_cents"], claim["amount_cents"])
            if claim["dispute_id"] != dispute_id or decided != (
                body.resolution,
                worker_cents,
                client_cents,
            ):
                raise refunds.in_progress(claim)
            # The same decision again: finish the refund it pinned.
        else:
            require_status(escrow, "frozen", action="settled by this dispute")
            worker_cents, client_cents = _parts(body, held=escrow["amount_cents"])
            fee_cents = platform_fee(worker_cents).fee_cents
            if client_cents:
                await refunds.claim_refund(
                    conn,
                    escrow=escrow,
                    purpose="dispute",
                    amount_cents=client_cents,
                    actor_id=admin.id,
                    dispute_id=dispute_id,
                    resolution=body.resolution,
                    worker_amount_cents=worker_cents,
                    fee_cents=fee_cents,
                    note=body.note,
                )
            else:
                await _settle(
                    conn,
                    project=project,
                    escrow=escrow,
                    dispute_id=dispute_id,
                    resolution=body.resolution,
                    worker_cents=worker_cents,
                    client_cents=0,
                    fee_cents=fee_cents,
                    note=body.note,
                    admin_id=admin.id,
                    refund_id=None,
                )
    if client_cents:
        await refunds.settle(
            pool=pool, stripe=stripe, escrow_id=escrow["id"], finish=finish_dispute_refund
        )
    async with pool.acquire() as conn:
        record = await repository.fetch_dispute(conn, dispute_id=dispute_id)
    assert record is not None
    return dispute_out(record)


async def finish_dispute_refund(
    conn: asyncpg.Connection,
    claim: asyncpg.Record,
    project: asyncpg.Record,
    escrow: asyncpg.Record,
    refund_id: uuid.UUID,
) -> None:
    """The pinned resolution, once Stripe made its refund (api/escrow/refunds.py `settle`)."""
    dispute = await repository.fetch_dispute(conn, dispute_id=claim["dispute_id"], for_update=True)
    # The hold was 'refunding' since the decision: nothing else could resolve the dispute.
    assert dispute is not None and dispute["status"] == "open"
    await _settle(
        conn,
        project=project,
        escrow=escrow,
        dispute_id=claim["dispute_id"],
        resolution=claim["resolution"],
        worker_cents=claim["worker_amount_cents"],
        client_cents=claim["amount_cents"],
        fee_cents=claim["fee_cents"],
        note=claim["note"],
        admin_id=claim["actor_id"],
        refund_id=refund_id,
    )


async def _settle(
    conn: asyncpg.Connection,
    *,
    project: asyncpg.Record,
    escrow: asyncpg.Record,
    dispute_id: uuid.UUID,
    resolution: Resolution,
    worker_cents: int,
    client_cents: int,
    fee_cents: int,
    note: str | None,
    admin_id: uuid.UUID,
    refund_id: uuid.UUID | None,
) -> None:
    """Record a resolution under the project, hold and dispute locks: the worker's payout, the
    client's refund (already made at Stripe: `refund_id`), the end states and their events."""
    if worker_cents:
        await settlement.pay_worker(
            conn,
            escrow=escrow,
            amount_cents=worker_cents,
            fee_cents=fee_cents,
            dispute_id=dispute_id,
            actor_id=admin_id,
        )
    if client_cents:
        assert refund_id is not None
        await settlement.append_refunded(
            conn,
            escrow=escrow,
            refund_id=refund_id,
            amount_cents=client_cents,
            reason="dispute",
            dispute_id=dispute_id,
            actor_id=admin_id,
        )
    # Settled at once (no refund), the hold is frozen and this is the admin's move; after a
    # refund it is 'refunding', and what Stripe refunded is the system's to record.
    await escrow_repository.move_hold(
        conn,
        escrow_id=escrow["id"],
        source=escrow["status"],
        target=_ESCROW_AFTER[resolution],
        actor="admin" if refund_id is None else "system",
    )
    project_status = _PROJECT_AFTER[resolution]
    await settlement.move_project(
        conn,
        project=project,
        to_status=project_status,
        actor="admin",
        how="resolve_dispute",
        actor_id=admin_id,
    )
    await repository.resolve_dispute(
        conn,
        dispute_id=dispute_id,
        resolution=resolution,
        worker_amount_cents=worker_cents,
        client_amount_cents=client_cents,
        fee_cents=fee_cents,
        note=note,
        resolved_by=admin_id,
    )
    resolved = DisputeResolved(
        dispute_id=dispute_id,
        project_id=project["id"],
        escrow_id=escrow["id"],
        client_id=escrow["client_id"],
        worker_id=escrow["worker_id"],
        resolution=resolution,
        worker_amount_cents=worker_cents,
        client_amount_cents=client_cents,
        fee_cents=fee_cents,
        currency=escrow["currency"],
        resolved_by=admin_id,
        project_status=project_status,
    )
    await append_event(conn, new_event(resolved, aggregate_id=project["id"], actor_id=admin_id))


def _parts(body: ResolveDisputeRequest, *, held: int) -> tuple[int, int]:
    """(worker part, client part) of the held amount; a 422 naming the field at fault."""
    worker, client = body.worker_amount_cents, body.client_amount_cents
    if body.resolution != "split":
        for field, value in (("workerAmountCents", worker), ("clientAmountCents", client)):
            if value is not None:
                _invalid(field, f"only a split takes amounts; {body.resolution} moves it all")
        return (held, 0) if body.resolution == "release" else (0, held)
    if worker is None:
        _invalid("workerAmountCents", "a split needs the worker's part")
    if client is None:
        _invalid("clientAmountCents", "a split needs the client's part")
    for field, value in (("workerAmountCents", worker), ("clientAmountCents", client)):
        if value == 0:
            _invalid(field, "each part of a split must be positive; use release or refund")
    if worker + client != held:
        raise Invalid(
            f"the parts add up to {worker + client} cents, the hold is {held} cents",
            code="SPLIT_MISMATCH",
            details=[
                {
                    "field": "workerAmountCents",
                    "message": f"workerAmountCents + clientAmountCents must equal {held}",
                    "type": "split_sum",
                }
            ],
        )
    return worker, client


def _invalid(field: str, message: str) -> NoReturn:
    raise Invalid(
        f"invalid request: {field}: {message}",
        details=[{"field": field, "message": message, "type": "value_error"}],
    )


def dispute_out(record: asyncpg.Record) -> DisputeOut:
    return DisputeOut(
        id=record["id"],
        project_id=record["project_id"],
        escrow_id=record["escrow_id"],
        client_id=record["client_id"],
        worker_id=record["worker_id"],
        opened_by=record["opened_by"],
        reason=record["reason"],
        evidence=[EvidenceItem.model_validate(item) for item in record["evidence"]],
        status=record["status"],
        previous_project_status=record["previous_project_status"],
        escrow_status=record["escrow_status"],
        amount_cents=record["amount_cents"],
        currency=record["currency"],
        resolution=record["resolution"],
        worker_amount_cents=record["worker_amount_cents"],
        client_amount_cents=record["client_amount_cents"],
        fee_cents=record["fee_cents"],
        resolution_note=record["resolution_note"],
        resolved_by=record["resolved_by"],
        resolved_at=record["resolved_at"],
        created_at=record["created_at"],
        updated_at=record["updated_at"],
    )
