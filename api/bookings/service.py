"""Bookings: the client books the worker of the accepted bid, and the escrow hold is made."""

from __future__ import annotations

import uuid
from typing import Literal

import asyncpg

from api.auth.schemas import AuthenticatedUser
from api.bids import repository as bids
from api.bookings import repository
from api.bookings.schemas import (
    BookingCreate,
    BookingItem,
    BookingOut,
    BookingPage,
    EscrowHoldOut,
    PartyOut,
)
from api.errors import Conflict, Forbidden, NotFound
from api.money import format_major, platform_fee
from api.pagination import Cursor, split_page
from api.projects.access import load_visible_project, sees_the_deal
from api.schemas import FieldProblem, invalid
from bridges.outbox import append_event
from infrastructure.database import unit_of_work
from streams.bookings import BookingCreated
from streams.events import new_event

BOOKING_NOT_FOUND = "booking not found"


async def create_booking(
    *, pool: asyncpg.Pool, user: AuthenticatedUser, body: BookingCreate
) -> BookingOut:
    """Book an awarded project's worker at the accepted bid's price, with its unfunded escrow
    hold (fee and net split once, here), in one transaction; emits `booking.created`."""
    async with unit_of_work(pool) as conn:
        project = await load_visible_project(
            conn, project_id=body.project_id, viewer=user, lock="update"
        )
        if project["client_id"] != user.id:
            raise Forbidden("only the project's client may book its worker")
        if project["booking_id"] is not None:
            raise Conflict(
                "this project is already booked",
                code="ALREADY_BOOKED",
                details={"bookingId": str(project["booking_id"])},
            )
        if project["status"] != "awarded":
            raise Conflict(
                f"only an awarded project can be booked; it is {project['status']}"
                + ("; accept a bid first" if project["status"] == "open" else ""),
                code="PROJECT_NOT_AWARDED",
                details={"currentStatus": project["status"]},
            )
        bid = await bids.fetch_bid(
            conn, bid_id=project["accepted_bid_id"], project_id=body.project_id
        )
        assert bid is not None, "an awarded project without its accepted bid"
        _check_terms(body, bid)
        booking_id, hold_id = uuid.uuid4(), uuid.uuid4()
        split = platform_fee(bid["amount_cents"])
        try:
            await repository.insert_booking(
                conn,
                booking_id=booking_id,
                project_id=body.project_id,
                bid_id=bid["id"],
                client_id=user.id,
                worker_id=bid["worker_id"],
                agreed_amount_cents=split.amount_cents,
                currency=bid["currency"],
            )
        except asyncpg.UniqueViolationError as exc:
            # Unreachable under the project lock; the unique index is the last line.
            raise Conflict("this project is already booked", code="ALREADY_BOOKED") from exc
        await repository.insert_escrow_hold(
            conn,
            hold_id=hold_id,
            booking_id=booking_id,
            project_id=body.project_id,
            client_id=user.id,
            worker_id=bid["worker_id"],
            amount_cents=split.amount_cents,
            fee_cents=split.fee_cents,
            net_cents=split.net_cents,
            currency=bid["currency"],
        )
        event = BookingCreated(
            booking_id=booking_id,
            project_id=body.project_id,
            bid_id=bid["id"],
            client_id=user.id,
            worker_id=bid["worker_id"],
            escrow_hold_id=hold_id,
            agreed_amount_cents=split.amount_cents,
            fee_cents=split.fee_cents,
            net_cents=split.net_cents,
            currency=bid["currency"],
        )
        await append_event(conn, new_event(event, aggregate_id=body.project_id, actor_id=user.id))
        record = await repository.fetch_booking(conn, booking_id=booking_id)
    assert record is not None
    return _out(record)


async def get_booking(
    *, pool: asyncpg.Pool, user: AuthenticatedUser, booking_id: uuid.UUID
) -> BookingOut:
    """A booking, for its client, its worker and admins; 404 for anyone else."""
    async with pool.acquire() as conn:
        record = await repository.fetch_booking(conn, booking_id=booking_id)
    if record is None:
        raise NotFound(BOOKING_NOT_FOUND)
    if not sees_the_deal(record, user):
        # The same answer as for a booking that does not exist.
        raise NotFound(BOOKING_NOT_FOUND)
    return _out(record)


async def list_bookings(
    *,
    pool: asyncpg.Pool,
    user: AuthenticatedUser,
    escrow_status: str | None,
    cursor: Cursor | None,
    limit: int,
) -> BookingPage:
    """The caller's bookings, as client or as worker, newest first; an admin's are all of them."""
    party_id = None if user.role == "admin" else user.id
    async with pool.acquire() as conn:
        rows = await repository.bookings_page(
            conn, party_id=party_id, escrow_status=escrow_status, cursor=cursor, limit=limit
        )
    page, next_cursor = split_page(rows, limit=limit)
    return BookingPage(items=[_item(row, user) for row in page], next_cursor=next_cursor)


def _item(row: asyncpg.Record, user: AuthenticatedUser) -> BookingItem:
    client = PartyOut(id=row["client_id"], name=row["client_name"])
    worker = PartyOut(id=row["worker_id"], name=row["worker_name"])
    # The schema forbids booking oneself (client_id <> worker_id), so the side is unambiguous.
    role: Literal["client", "worker"] | None
    other: PartyOut | None
    if user.id == client.id:
        role, other = "client", worker
    elif user.id == worker.id:
        role, other = "worker", client
    else:
        role, other = None, None
    return BookingItem(
        id=row["id"],
        project_id=row["project_id"],
        project_title=row["project_title"],
        client=client,
        worker=worker,
        role=role,
        other_party=other,
        agreed_amount_cents=row["agreed_amount_cents"],
        currency=row["currency"],
        escrow_id=row["hold_id"],
        escrow_status=row["hold_status"],
        created_at=row["created_at"],
    )


def _check_terms(body: BookingCreate, bid: asyncpg.Record) -> None:
    """The booking must restate the accepted bid: its worker and its price, in the form the
    client used (a seed client's decimal is compared as the minor units it stands for)."""
    details = []
    if body.worker_id != bid["worker_id"]:
        details.append({"field": "workerId", "message": "must be the worker of the accepted bid"})
    try:
        stated: int | None = body.agreed_in(bid["currency"])
    except FieldProblem as problem:
        details.append(problem.detail)
        stated = None
    if stated is not None and stated != bid["amount_cents"]:
        if body.agreed_amount is not None:
            price = f"{format_major(bid['amount_cents'], bid['currency'])} {bid['currency']}"
        else:
            price = f"{bid['amount_cents']} cents {bid['currency']}"
        details.append(
            {
                "field": body.amount_field,
                "message": f"must equal the accepted bid's amount, {price}",
                "type": "amount_mismatch",
            }
        )
    if details:
        raise invalid(details)


def _out(record: asyncpg.Record) -> BookingOut:
    return BookingOut(
        id=record["id"],
        project_id=record["project_id"],
        bid_id=record["bid_id"],
        client_id=record["client_id"],
        worker_id=record["worker_id"],
        agreed_amount_cents=record["agreed_amount_cents"],
        currency=record["currency"],
        created_at=record["created_at"],
        escrow=EscrowHoldOut(
            id=record["hold_id"],
            status=record["hold_status"],
            amount_cents=record["hold_amount_cents"],
            fee_cents=record["hold_fee_cents"],
            net_cents=record["hold_net_cents"],
            currency=record["currency"],
            funded_at=record["hold_funded_at"],
            released_at=record["hold_released_at"],
            refunded_at=record["hold_refunded_at"],
            updated_at=record["hold_updated_at"],
        ),
    )
