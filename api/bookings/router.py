"""/api/bookings: the client books the worker of the accepted bid (seed contract), and either
party reads the booking with its escrow hold."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from api.auth.dependencies import CurrentUser
from api.bookings import service
from api.bookings.schemas import BookingCreate, BookingOut
from api.envelope import Envelope, ok
from api.schemas import ExactJsonRoute
from api.state import PoolDep

router = APIRouter(prefix="/bookings", tags=["bookings"], route_class=ExactJsonRoute)


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_booking(
    body: BookingCreate, user: CurrentUser, pool: PoolDep
) -> Envelope[BookingOut]:
    return ok(await service.create_booking(pool=pool, user=user, body=body))


@router.get("/{booking_id}")
async def read_booking(
    booking_id: uuid.UUID, user: CurrentUser, pool: PoolDep
) -> Envelope[BookingOut]:
    return ok(await service.get_booking(pool=pool, user=user, booking_id=booking_id))
