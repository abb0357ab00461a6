"""Bodies of /api/escrow."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from api.schemas import ApiModel

EscrowStatus = Literal["unfunded", "funded", "frozen", "released", "refunded", "split"]


class PayoutOut(ApiModel):
    id: uuid.UUID
    # What the worker receives, and the platform fee kept on the released part.
    amount_cents: int
    fee_cents: int
    # 'pending_transfer': owed, waiting for the worker's Stripe account; 'transferred': paid.
    status: Literal["pending_transfer", "transferred"]


class EscrowOut(ApiModel):
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
    payment_id: uuid.UUID | None
    payment_status: Literal["pending", "succeeded", "failed"] | None
    refunded_cents: int
    payout: PayoutOut | None
    funded_at: datetime | None
    released_at: datetime | None
    refunded_at: datetime | None
    created_at: datetime
    updated_at: datetime
