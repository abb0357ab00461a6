"""Bodies of /api/billing."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from api.schemas import ResponseModel


class CurrencyTotals(ResponseModel):
    """A client's money in one currency. paidCents == refundedCents + inEscrowCents +
    releasedCents (up to refunds made outside the platform and still under review)."""

    currency: str
    # Payments that succeeded, and how many.
    paid_cents: int
    payments_count: int
    # Payments started and not yet confirmed by Stripe.
    pending_cents: int
    # Given back to the client's card (cancellations, disputes, outside refunds).
    refunded_cents: int
    # Held for bookings now (funded, or frozen by a dispute).
    in_escrow_cents: int
    # Released for work: the workers' net plus the platform fee on it.
    released_cents: int
    # The platform fee kept on released money (10% of each release, rounded half up).
    fees_cents: int


class BillingSummary(ResponseModel):
    currencies: list[CurrencyTotals]


class PaymentItem(ResponseModel):
    payment_id: uuid.UUID
    booking_id: uuid.UUID
    project_id: uuid.UUID
    escrow_id: uuid.UUID
    amount_cents: int
    fee_cents: int
    net_cents: int
    refunded_cents: int
    currency: str
    status: Literal["pending", "succeeded", "failed"]
    escrow_status: str
    failure_message: str | None
    created_at: datetime
    succeeded_at: datetime | None


class PaymentPage(ResponseModel):
    items: list[PaymentItem]
    # Pass as `cursor` for the next page; null on the last one.
    next_cursor: str | None
