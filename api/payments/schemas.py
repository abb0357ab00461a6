"""Bodies of /api/payments."""

from __future__ import annotations

import uuid
from typing import Literal

from api.schemas import ApiModel

PaymentStatus = Literal["pending", "succeeded", "failed"]


class CreateIntentRequest(ApiModel):
    booking_id: uuid.UUID


class IntentOut(ApiModel):
    """What the client's browser needs to confirm the payment with Stripe.js.

    The client is charged amount_cents (the agreed amount); the platform fee is 10% of it,
    rounded half up to the cent; the worker receives net_cents = amount_cents - fee_cents.
    """

    payment_id: uuid.UUID
    booking_id: uuid.UUID
    escrow_id: uuid.UUID
    payment_intent_id: str
    client_secret: str
    amount_cents: int
    fee_cents: int
    net_cents: int
    currency: str
    status: PaymentStatus


class WebhookAck(ApiModel):
    event_id: str
    # applied: it changed something; duplicate: seen before, nothing done; ignored: not a type
    # or object we act on; rejected: ours but inconsistent (see note), nothing done.
    outcome: Literal["applied", "duplicate", "ignored", "rejected"]
    note: str | None = None
