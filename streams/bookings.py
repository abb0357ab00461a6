"""Records of the bookings domain. Keyed by project id, like every event of the gig lifecycle."""

from __future__ import annotations

import uuid
from typing import ClassVar

from streams.events import EventData


class BookingCreated(EventData):
    """A client booked the worker of the accepted bid; its escrow hold exists, still unfunded.

    fee + net == agreed amount, split once by api/money.py `platform_fee`: consumers copy these
    numbers and never recompute the fee.
    """

    event_type: ClassVar[str] = "booking.created"

    booking_id: uuid.UUID
    project_id: uuid.UUID
    bid_id: uuid.UUID
    client_id: uuid.UUID
    worker_id: uuid.UUID
    escrow_hold_id: uuid.UUID
    agreed_amount_cents: int
    fee_cents: int
    net_cents: int
    currency: str
