"""/api/bookings: the client books the worker of the accepted bid (seed contract), and either
party reads the booking with its escrow hold, or lists its own bookings."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Query, status

from api.auth.dependencies import SignedIn
from api.bookings import service
from api.bookings.schemas import BookingCreate, BookingOut, BookingPage, EscrowStatus
from api.envelope import Envelope, ok
from api.pagination import DEFAULT_LIMIT, CursorParam, Limit, decode_cursor
from api.routers import DomainRouter
from api.schemas import ExactJsonRoute

router = DomainRouter(prefix="/bookings", tags=["bookings"], route_class=ExactJsonRoute)


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_booking(body: BookingCreate, caller: SignedIn) -> Envelope[BookingOut]:
    return ok(await service.create_booking(pool=caller.pool, user=caller.user, body=body))


@router.get("")
async def list_bookings(
    caller: SignedIn,
    status_: Annotated[
        EscrowStatus | None,
        Query(alias="status", description="only bookings whose escrow hold is in this status"),
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> Envelope[BookingPage]:
    """The caller's bookings, as client or as worker (an admin's: every booking), newest first."""
    return ok(
        await service.list_bookings(
            pool=caller.pool,
            user=caller.user,
            escrow_status=status_,
            cursor=decode_cursor(cursor),
            limit=limit,
        )
    )


@router.get("/{booking_id}")
async def read_booking(booking_id: uuid.UUID, caller: SignedIn) -> Envelope[BookingOut]:
    return ok(await service.get_booking(pool=caller.pool, user=caller.user, booking_id=booking_id))
