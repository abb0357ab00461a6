"""Projects: posting, the board, edits while open, and the status moves of either party."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from api.auth.schemas import AuthenticatedUser
from api.bids import repository as bids
from api.bookings import repository as bookings
from api.errors import Conflict, Forbidden, Unauthorized
from api.pagination import Cursor, split_page
from api.payments import repository as payments_repository
from api.projects import lifecycle, repository
from api.projects.access import load_visible_project, party_of
from api.projects.schemas import (
    ProjectCreate,
    ProjectOut,
    ProjectPage,
    ProjectUpdate,
    check_chargeable,
)
from api.schemas import FieldProblem
from bridges.outbox import append_event
from bridges.stripe import StripeGateway
from infrastructure.database import unit_of_work
from streams.events import new_event
from streams.projects import (
    ProjectCreated,
    ProjectDelivered,
    ProjectStatusChanged,
    ProjectUpdated,
)


async def create_project(
    *, pool: asyncpg.Pool, client: AuthenticatedUser, body: ProjectCreate
) -> ProjectOut:
    """Post an open project and emit `project.created`."""
    project_id = uuid.uuid4()
    async with unit_of_work(pool) as conn:
        await repository.insert_project(
            conn,
            project_id=project_id,
            client_id=client.id,
            title=body.title,
            description=body.description,
            budget_cents=body.budget_cents,
            currency=body.currency,
            required_skills=body.required_skills,
            deadline=body.deadline,
        )
        event = ProjectCreated(
            project_id=project_id,
            client_id=client.id,
            title=body.title,
            description=body.description,
            budget_cents=body.budget_cents,
            currency=body.currency,
            required_skills=body.required_skills,
            deadline=body.deadline,
            status="open",
        )
        await append_event(conn, new_event(event, aggregate_id=project_id, actor_id=client.id))
        return await _reread(conn, project_id)


async def list_projects(
    *,
    pool: asyncpg.Pool,
    viewer: AuthenticatedUser | None,
    filters: repository.ProjectFilters,
    cursor: Cursor | None,
    limit: int,
) -> ProjectPage:
    """A page of the projects `viewer` may see, newest first."""
    if filters.mine and viewer is None:
        raise Unauthorized("sign in to list your own projects")
    who = (
        repository.Viewer(id=viewer.id, role=viewer.role)
        if viewer
        else repository.Viewer(None, None)
    )
    async with pool.acquire() as conn:
        rows = await repository.list_projects(
            conn, filters=filters, viewer=who, cursor=cursor, limit=limit
        )
    page, next_cursor = split_page(rows, limit=limit)
    return ProjectPage(items=[_out(row) for row in page], next_cursor=next_cursor)


async def get_project(
    *, pool: asyncpg.Pool, viewer: AuthenticatedUser | None, project_id: uuid.UUID
) -> ProjectOut:
    async with pool.acquire() as conn:
        return _out(await load_visible_project(conn, project_id=project_id, viewer=viewer))


async def update_project(
    *, pool: asyncpg.Pool, user: AuthenticatedUser, project_id: uuid.UUID, body: ProjectUpdate
) -> ProjectOut:
    """Edit an open project (its client only); emit `project.updated` with what changed."""
    sent = body.model_dump(exclude_unset=True)
    async with unit_of_work(pool) as conn:
        project = await load_visible_project(
            conn, project_id=project_id, viewer=user, lock="update"
        )
        if project["client_id"] != user.id:
            raise Forbidden("only the project's client may edit it")
        if project["status"] != "open":
            raise Conflict(
                f"a project can be edited only while open; it is {project['status']}",
                code="PROJECT_NOT_OPEN",
                details={"currentStatus": project["status"]},
            )
        if body.budget is not None:
            try:
                sent["budget_cents"] = body.budget_in(project["currency"])
            except FieldProblem as problem:
                raise problem.as_invalid() from None
        changed = {column: value for column, value in sent.items() if project[column] != value}
        if "currency" in changed and await bids.count_live(conn, project_id=project_id):
            # Every bid is in the project's currency; switching under them would strand them.
            raise Conflict(
                "the currency cannot change once the project has bids",
                code="PROJECT_HAS_BIDS",
                details=[{"field": "currency", "message": "the project already has bids"}],
            )
        if not changed:
            return _out(project)
        if "budget_cents" in changed or "currency" in changed:
            budget = changed.get("budget_cents", project["budget_cents"])
            currency = changed.get("currency", project["currency"])
            field = "budgetCents" if "budget_cents" in changed else "currency"
            try:
                check_chargeable(budget, currency, field=field)
            except FieldProblem as problem:
                raise problem.as_invalid() from None
        await repository.update_columns(conn, project_id=project_id, values=changed)
        # An amount never travels without its currency.
        shown = set(changed) | ({"currency"} if "budget_cents" in changed else set())
        values = body.model_copy(update={"currency": project["currency"], **changed})
        event = ProjectUpdated(
            project_id=project_id,
            client_id=user.id,
            changed=sorted(changed),
            project=values.model_dump(mode="json", include=shown),
        )
        await append_event(conn, new_event(event, aggregate_id=project_id, actor_id=user.id))
        return await _reread(conn, project_id)


async def change_status(
    *,
    pool: asyncpg.Pool,
    stripe: StripeGateway,
    user: AuthenticatedUser,
    project_id: uuid.UUID,
    target: str,
) -> ProjectOut:
    """Make one move of the state machine (api/projects/lifecycle.py) for the caller's side.

    Cancelling a project whose hold is funded gives the money back first, through Stripe, with
    nothing held while Stripe is called: this transaction pins the refund (the hold becomes
    'refunding') and the cancellation itself is recorded with the refund (api/escrow/refunds.py).
    If Stripe does not answer, the answer is a 503 and the project keeps its status until the
    same request is repeated; a funded project is never cancelled unpaid. `stripe` also cancels
    the intent of a payment still pending, after the cancellation commits.
    """
    stopped: asyncpg.Record | None = None
    refunding: uuid.UUID | None = None
    async with unit_of_work(pool) as conn:
        project = await load_visible_project(
            conn, project_id=project_id, viewer=user, lock="update"
        )
        current: str = project["status"]
        party = party_of(project, user)
        if party is None:
            raise Forbidden(
                "only the project's client or its booked worker may change its status",
                details={"currentStatus": current, "allowed": []},
            )
        lifecycle.check_move(current=current, target=target, party=party)
        if target == "cancelled":
            # Imported here: escrow depends on projects, not the other way round.
            from api.escrow.service import claim_cancellation_refund

            refunding = await claim_cancellation_refund(
                conn, project_id=project_id, actor_id=user.id
            )
        if refunding is None:
            event: ProjectDelivered | ProjectStatusChanged
            if target == "delivered":
                event = await _delivery(conn, project)
            else:
                rejected: list[uuid.UUID] = []
                if current == "awarded" and target == "in_progress":
                    await _require_funded_escrow(conn, project_id)
                elif target == "cancelled":
                    rejected, stopped = await _cancel(conn, project_id=project_id)
                event = ProjectStatusChanged(
                    project_id=project_id,
                    client_id=project["client_id"],
                    worker_id=project["worker_id"],
                    from_status=current,
                    to_status=target,
                    rejected_bid_ids=rejected,
                )
            # check_move above allowed exactly this edge, for this party.
            await repository.move_status(
                conn,
                project_id=project_id,
                source=current,
                target=target,
                actor=party,
                how="status",
            )
            await append_event(conn, new_event(event, aggregate_id=project_id, actor_id=user.id))
        out = await _reread(conn, project_id)
    if refunding is not None:
        from api.escrow.service import settle_refund

        await settle_refund(
            pool=pool, stripe=stripe, escrow_id=refunding, finish=finish_cancellation_refund
        )
        async with pool.acquire() as conn:
            return await _reread(conn, project_id)
    if stopped is not None:
        # After the commit, holding nothing: the cancellation stands whatever Stripe answers
        # (an unanswered cancel is retried later; see api/payments/service.py).
        from api.payments.service import cancel_intent

        await cancel_intent(
            pool=pool,
            stripe=stripe,
            payment_id=stopped["id"],
            intent_id=stopped["stripe_payment_intent_id"],
        )
    return out


async def finish_cancellation_refund(
    conn: asyncpg.Connection,
    claim: asyncpg.Record,
    project: asyncpg.Record,
    escrow: asyncpg.Record,
    refund_id: uuid.UUID,
) -> None:
    """The cancellation a refund was pinned for, once Stripe made the refund: the hold is
    refunded and the project cancelled, with the events a cancellation has always had."""
    # Imported here: escrow depends on projects, not the other way round.
    from api.escrow.service import finish_cancelled_payment_refund

    rejected = await bids.reject_pending(conn, project_id=project["id"])
    # The hold's side is the same as for a payment that landed after the cancellation.
    await finish_cancelled_payment_refund(conn, claim, project, escrow, refund_id)
    # The project kept its status while the refund was pinned: no move but this cancellation
    # was allowed meanwhile (a delivery is refused while its hold is refunding).
    event = ProjectStatusChanged(
        project_id=project["id"],
        client_id=project["client_id"],
        worker_id=project["worker_id"],
        from_status=project["status"],
        to_status="cancelled",
        rejected_bid_ids=rejected,
    )
    # The client's cancellation, allowed by check_move when the refund was pinned.
    await repository.move_status(
        conn,
        project_id=project["id"],
        source=project["status"],
        target="cancelled",
        actor="client",
        how="status",
    )
    await append_event(
        conn, new_event(event, aggregate_id=project["id"], actor_id=claim["actor_id"])
    )


async def _require_funded_escrow(conn: asyncpg.Connection, project_id: uuid.UUID) -> None:
    # Work starts only against money already held: that is what the escrow promises the worker.
    booking = await bookings.fetch_project_booking(conn, project_id=project_id)
    if booking is None:
        raise Conflict(
            "work can start once the client has booked you (POST /api/bookings)",
            code="NOT_BOOKED",
            details={"currentStatus": "awarded", "escrowStatus": None},
        )
    if booking["hold_status"] != "funded":
        raise Conflict(
            f"work can start once the escrow is funded; it is {booking['hold_status']}",
            code="ESCROW_NOT_FUNDED",
            details={"currentStatus": "awarded", "escrowStatus": booking["hold_status"]},
        )


async def _delivery(conn: asyncpg.Connection, project: asyncpg.Record) -> ProjectDelivered:
    booking = await bookings.fetch_project_booking(conn, project_id=project["id"])
    # in_progress is reached only through a booking with a funded hold.
    assert booking is not None, "an in_progress project without a booking"
    if booking["hold_status"] == "refunding":
        # The client cancelled and the refund is under way: the work is no longer wanted.
        raise Conflict(
            "the project is being cancelled and its escrow refunded",
            code="REFUND_IN_PROGRESS",
            details={"currentStatus": project["status"], "escrowStatus": "refunding"},
        )
    return ProjectDelivered(
        project_id=project["id"],
        client_id=project["client_id"],
        worker_id=project["worker_id"],
        booking_id=booking["id"],
        agreed_amount_cents=booking["agreed_amount_cents"],
        currency=booking["currency"],
    )


async def _cancel(
    conn: asyncpg.Connection, *, project_id: uuid.UUID
) -> tuple[list[uuid.UUID], asyncpg.Record | None]:
    """Close the project's pending bids and stop a payment still pending (a funded hold was
    pinned for refund before, and is cancelled with it); the rejected bid ids and the stopped
    payment (its intent to cancel at Stripe)."""
    rejected = await bids.reject_pending(conn, project_id=project_id)
    booking = await bookings.fetch_project_booking(conn, project_id=project_id, lock_hold=True)
    if booking is not None and booking["hold_status"] == "unfunded":
        # An intent made but not paid would otherwise stay "pending" forever.
        stopped = await payments_repository.stop_pending_payment(
            conn,
            booking_id=booking["id"],
            reason="project_cancelled",
            message="the project was cancelled before it was paid",
        )
        return rejected, stopped
    return rejected, None


async def _reread(conn: asyncpg.Connection, project_id: uuid.UUID) -> ProjectOut:
    record = await repository.fetch_project(conn, project_id=project_id)
    assert record is not None
    return _out(record)


def _out(record: asyncpg.Record) -> ProjectOut:
    fields: dict[str, Any] = {name: record[name] for name in ProjectOut.model_fields}
    return ProjectOut(**fields)
