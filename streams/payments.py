"""Records of the payments domain: the outcome of a client's Stripe payment for a booking.

Keyed (envelope `aggregate_id`) by the project id, like every event of the gig lifecycle, so a
project's booking, payment, escrow and dispute events share a partition and arrive in order.
Money is integer cents plus its ISO 4217 currency; fee + net == amount, split once by
api/money.py `platform_fee`: consumers copy these numbers and never recompute the fee.
"""

from __future__ import annotations

import uuid
from typing import ClassVar

from streams.events import EventData


class PaymentCompleted(EventData):
    """Stripe confirmed the client's payment; the escrow hold is funded by it (`escrow.funded`)."""

    event_type: ClassVar[str] = "payment.completed"

    payment_id: uuid.UUID
    booking_id: uuid.UUID
    escrow_id: uuid.UUID
    project_id: uuid.UUID
    client_id: uuid.UUID
    worker_id: uuid.UUID
    amount_cents: int
    fee_cents: int
    net_cents: int
    currency: str
    stripe_payment_intent_id: str


class PaymentFailed(EventData):
    """A payment attempt was declined; the client may retry on the same payment."""

    event_type: ClassVar[str] = "payment.failed"

    payment_id: uuid.UUID
    booking_id: uuid.UUID
    escrow_id: uuid.UUID
    project_id: uuid.UUID
    client_id: uuid.UUID
    amount_cents: int
    currency: str
    stripe_payment_intent_id: str
    failure_code: str | None
    failure_message: str | None
