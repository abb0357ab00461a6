"""Bids: submit (workers, on open projects), withdraw, list, and the atomic accept."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from api.auth.schemas import AuthenticatedUser
from api.bids import repository
from api.bids.schemas import BidAcceptance, BidCreate, BidOut, BidPage
from api.errors import Conflict, Forbidden, Invalid, NotFound
from api.pagination import Cursor, split_page
from api.projects import repository as projects
from api.projects.access import load_visible_project
from api.schemas import FieldProblem
from bridges.outbox import append_event
from infrastructure.database import unit_of_work
from streams.events import new_event
from streams.projects import BidAccepted, BidExpired, BidSubmitted, BidWithdrawn

BID_NOT_FOUND = "bid not found"


async def submit_bid(
    *, pool: asyncpg.Pool, worker: AuthenticatedUser, project_id: uuid.UUID, body: BidCreate
) -> BidOut:
    """A pending bid on an open project; emits `bid.submitted`."""
    async with unit_of_work(pool) as conn:
        # FOR SHARE: bids on one project go in side by side, but never while an accept (FOR
        # UPDATE) is awarding it, so no pending bid appears on an awarded project.
        project = await load_visible_project(
            conn, project_id=project_id, viewer=worker, lock="share"
        )
        _require_open(project, "bids are taken only while the project is open")
        if body.currency is not None and body.currency != project["currency"]:
            message = f"must be the project's currency, {project['currency']}"
            raise Invalid(
                f"invalid request: currency: {message}",
                details=[{"field": "currency", "message": message, "type": "currency"}],
            )
        try:
            # Only now is the currency known, and with it how many decimals `amount` may have.
            amount_cents = body.amount_in(project["currency"])
        except FieldProblem as problem:
            raise problem.as_invalid() from None
        bid_id = uuid.uuid4()
        try:
            bid = await repository.insert_bid(
                conn,
                bid_id=bid_id,
                project_id=project_id,
                worker_id=worker.id,
                amount_cents=amount_cents,
                currency=project["currency"],
                delivery_days=body.delivery_days,
                proposal=body.proposal,
            )
        except asyncpg.UniqueViolationError as exc:
            # The partial unique index is the arbiter: a pre-check would lose the race between
            # two bids sent at once.
            raise Conflict(
                "you already have a live bid on this project; withdraw it to bid again",
                code="DUPLICATE_BID",
            ) from exc
        event = BidSubmitted(
            bid_id=bid_id,
            project_id=project_id,
            client_id=project["client_id"],
            worker_id=worker.id,
            amount_cents=amount_cents,
            currency=project["currency"],
            delivery_days=body.delivery_days,
        )
        await append_event(conn, new_event(event, aggregate_id=project_id, actor_id=worker.id))
    return _out(bid)


async def list_bids(
    *,
    pool: asyncpg.Pool,
    user: AuthenticatedUser,
    project_id: uuid.UUID,
    cursor: Cursor | None,
    limit: int,
) -> BidPage:
    """All bids for the project's client (and admins); a worker sees only their own."""
    async with pool.acquire() as conn:
        project = await load_visible_project(conn, project_id=project_id, viewer=user)
        if user.role == "admin" or user.id == project["client_id"]:
            only: uuid.UUID | None = None
        elif user.role == "worker":
            only = user.id
        else:
            raise Forbidden("only the project's client sees its bids")
        rows = await repository.list_bids(
            conn, project_id=project_id, worker_id=only, cursor=cursor, limit=limit
        )
    page, next_cursor = split_page(rows, limit=limit)
    return BidPage(items=[_out(row) for row in page], next_cursor=next_cursor)


async def withdraw_bid(
    *, pool: asyncpg.Pool, user: AuthenticatedUser, project_id: uuid.UUID, bid_id: uuid.UUID
) -> BidOut:
    """The bidder takes back a pending bid; emits `bid.withdrawn`."""
    async with unit_of_work(pool) as conn:
        # Project first, then bid: the same lock order as accept, so the two never deadlock.
        project = await load_visible_project(conn, project_id=project_id, viewer=user, lock="share")
        bid = await repository.fetch_bid(
            conn, bid_id=bid_id, project_id=project_id, for_update=True
        )
        if bid is None or not _may_see_bid(bid, project, user):
            raise NotFound(BID_NOT_FOUND)
        if bid["worker_id"] != user.id:
            raise Forbidden("only the worker who made a bid may withdraw it")
        if bid["status"] != "pending":
            raise Conflict(
                f"only a pending bid can be withdrawn; this one is {bid['status']}",
                code="BID_NOT_PENDING",
                details={"currentStatus": bid["status"]},
            )
        withdrawn = await repository.set_status(conn, bid_id=bid_id, status="withdrawn")
        event = BidWithdrawn(
            bid_id=bid_id,
            project_id=project_id,
            client_id=project["client_id"],
            worker_id=user.id,
        )
        await append_event(conn, new_event(event, aggregate_id=project_id, actor_id=user.id))
    return _out(withdrawn)


async def expire_bid(*, pool: asyncpg.Pool, project_id: uuid.UUID, bid_id: uuid.UUID) -> str | None:
    """A bid still pending at the end of its expiry (the `bid_expiry` job) expires; emits
    `bid.expired`. None when it expired now, else why it was left as it is (accepted, rejected,
    withdrawn or expired before: nothing to do, so running the job twice changes nothing)."""
    async with unit_of_work(pool) as conn:
        # Project first, then bid: the lock order of accept, so an accept and an expiry of the
        # same bid never deadlock, and one of them finds the bid no longer pending.
        project = await projects.fetch_project(
            conn, project_id=project_id, viewer_id=None, lock="share"
        )
        bid = await repository.fetch_bid(
            conn, bid_id=bid_id, project_id=project_id, for_update=True
        )
        if project is None or bid is None:
            return "the bid does not exist"
        if bid["status"] != "pending":
            return f"the bid is {bid['status']}"
        await repository.set_status(conn, bid_id=bid_id, status="expired")
        event = BidExpired(
            bid_id=bid_id,
            project_id=project_id,
            client_id=project["client_id"],
            worker_id=bid["worker_id"],
        )
        await append_event(conn, new_event(event, aggregate_id=project_id))
    return None


async def accept_bid(
    *, pool: asyncpg.Pool, user: AuthenticatedUser, project_id: uuid.UUID, bid_id: uuid.UUID
) -> BidAcceptance:
    """Award the project to one bid, atomically: the bid accepted, every other pending bid
    rejected, the project awarded to the bid's worker, `bid.accepted` emitted, all in one
    transaction under the project's row lock. Of two accepts racing, the second waits for the
    lock, then finds the project awarded: a 409."""
    async with unit_of_work(pool) as conn:
        project = await load_visible_project(
            conn, project_id=project_id, viewer=user, lock="update"
        )
        if project["client_id"] != user.id:
            raise Forbidden("only the project's client may accept a bid")
        _require_open(project, "a bid can be accepted only while the project is open")
        bid = await repository.fetch_bid(
            conn, bid_id=bid_id, project_id=project_id, for_update=True
        )
        if bid is None:
            raise NotFound(BID_NOT_FOUND)
        if bid["status"] != "pending":
            raise Conflict(
                f"only a pending bid can be accepted; this one is {bid['status']}",
                code="BID_NOT_PENDING",
                details={"currentStatus": bid["status"]},
            )
        if not bid["worker_is_active"]:
            raise Conflict("the worker of this bid has deactivated their account")
        accepted = await repository.set_status(conn, bid_id=bid_id, status="accepted")
        rejected = await repository.reject_pending(conn, project_id=project_id)
        await projects.award(conn, project_id=project_id, worker_id=bid["worker_id"], bid_id=bid_id)
        event = BidAccepted(
            bid_id=bid_id,
            project_id=project_id,
            client_id=user.id,
            worker_id=bid["worker_id"],
            amount_cents=bid["amount_cents"],
            currency=bid["currency"],
            delivery_days=bid["delivery_days"],
            rejected_bid_ids=rejected,
        )
        await append_event(conn, new_event(event, aggregate_id=project_id, actor_id=user.id))
    return BidAcceptance(bid=_out(accepted), rejected_bid_ids=rejected)


def _require_open(project: asyncpg.Record, message: str) -> None:
    if project["status"] != "open":
        raise Conflict(
            f"{message}; it is {project['status']}",
            code="PROJECT_NOT_OPEN",
            details={"currentStatus": project["status"]},
        )


def _may_see_bid(bid: asyncpg.Record, project: asyncpg.Record, user: AuthenticatedUser) -> bool:
    # Bids are private between their worker and the project's client (and admins).
    return user.role == "admin" or user.id in (bid["worker_id"], project["client_id"])


def _out(record: asyncpg.Record) -> BidOut:
    fields: dict[str, Any] = {name: record[name] for name in BidOut.model_fields}
    return BidOut(**fields)
