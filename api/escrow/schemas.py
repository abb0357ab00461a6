"""Bodies of /api/escrow."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from api.schemas import ResponseModel

EscrowStatus = Literal["unfunded", "funded", "frozen", "refunding", "released", "refunded", "split"]


class PayoutOut(ResponseModel):
    id: uuid.UUID
    # What the worker receives, and the platform fee kept on the released part.
    amount_cents: int
    fee_cents: int
    # 'pending_transfer': owed, waiting for the worker's Stripe account; 'transferred': paid.
    status: Literal["pending_transfer", "transferred"]


class PaymentAttemptOut(ResponseModel):
    """One PaymentIntent made to fund the hold; a declined card leaves it 'failed' until the
    client retries."""

    id: uuid.UUID
    payment_intent_id: str
    amount_cents: int
    fee_cents: int
    net_cents: int
    refunded_cents: int
    currency: str
    status: Literal["pending", "succeeded", "failed"]
    failure_code: str | None
    failure_message: str | None
    succeeded_at: datetime | None
    created_at: datetime
    updated_at: datetime


class PayoutMovementOut(PayoutOut):
    currency: str
    # The dispute whose resolution paid it; null for a release by the client.
    dispute_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class RefundOut(ResponseModel):
    id: uuid.UUID
    payment_id: uuid.UUID
    amount_cents: int
    currency: str
    # 'external': refunded outside the API (the Stripe dashboard), learnt from Stripe's webhook.
    reason: Literal["cancellation", "dispute", "external"]
    dispute_id: uuid.UUID | None
    created_at: datetime


class EscrowOut(ResponseModel):
    id: uuid.UUID
    booking_id: uuid.UUID
    project_id: uuid.UUID
    client_id: uuid.UUID
    worker_id: uuid.UUID
    # The client pays amount_cents; on release the worker gets net_cents, the platform fee_cents.
    amount_cents: int
    fee_cents: int
    net_cents: int
    currency: str
    status: EscrowStatus
    # The latest payment; `payments` lists every one.
    payment_id: uuid.UUID | None
    payment_status: Literal["pending", "succeeded", "failed"] | None
    refunded_cents: int
    payout: PayoutOut | None
    # The money movements of the hold, oldest first.
    payments: list[PaymentAttemptOut]
    payouts: list[PayoutMovementOut]
    refunds: list[RefundOut]
    funded_at: datetime | None
    released_at: datetime | None
    refunded_at: datetime | None
    created_at: datetime
    updated_at: datetime
