"""Bodies of /api/bookings."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import AliasChoices, Field

from api.projects.schemas import AmountCents
from api.schemas import ApiModel

EscrowStatus = Literal["unfunded", "funded", "frozen", "released", "refunded", "split"]


class BookingCreate(ApiModel):
    project_id: uuid.UUID
    worker_id: uuid.UUID
    # The seed contract calls it `agreedAmount`; it is integer cents either way, and it must
    # equal the accepted bid's amount: the worker agreed to that price and no other.
    agreed_amount_cents: AmountCents = Field(
        validation_alias=AliasChoices("agreedAmountCents", "agreedAmount")
    )


class EscrowHoldOut(ApiModel):
    id: uuid.UUID
    status: EscrowStatus
    amount_cents: int
    fee_cents: int
    net_cents: int
    currency: str
    funded_at: datetime | None
    released_at: datetime | None
    refunded_at: datetime | None
    updated_at: datetime


class BookingOut(ApiModel):
    id: uuid.UUID
    project_id: uuid.UUID
    bid_id: uuid.UUID
    client_id: uuid.UUID
    worker_id: uuid.UUID
    agreed_amount_cents: int
    currency: str
    escrow: EscrowHoldOut
    created_at: datetime
