"""Bodies of /api/projects/{id}/bids."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import Field

from api.projects.schemas import AmountCents, Currency, bounded
from api.schemas import ApiModel

# A year: longer is not a gig but a job, and a typo (3650) is caught.
MAX_DELIVERY_DAYS: Final = 365

BidStatus = Literal["pending", "accepted", "rejected", "withdrawn"]


class BidCreate(ApiModel):
    amount_cents: AmountCents
    # Optional: a bid is always in its project's currency; sending another one is a 422.
    currency: Currency | None = None
    delivery_days: Annotated[int, Field(strict=True, ge=1, le=MAX_DELIVERY_DAYS)]
    proposal: Annotated[str, bounded(5000, min_length=1)]


class BidOut(ApiModel):
    id: uuid.UUID
    project_id: uuid.UUID
    worker_id: uuid.UUID
    amount_cents: int
    currency: str
    delivery_days: int
    proposal: str
    status: BidStatus
    created_at: datetime
    updated_at: datetime


class BidPage(ApiModel):
    items: list[BidOut]
    next_cursor: str | None


class BidAcceptance(ApiModel):
    """The accepted bid and the project it awarded."""

    bid: BidOut
    # The other bids that were still pending, now rejected.
    rejected_bid_ids: list[uuid.UUID]
