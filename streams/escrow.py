"""Records of the escrow domain: money held for a booking, and where it went.

Keyed by the project id (see streams/payments.py). For one hold the amounts balance:
funded amount == released amount_cents (fee + net) + refunded amount_cents, so an agent keeping
escrow balances subtracts what these records say and never recomputes a fee.
"""

from __future__ import annotations

import uuid
from typing import ClassVar, Literal

from streams.events import EventData

RefundReason = Literal["cancellation", "dispute", "external"]


class EscrowFunded(EventData):
    event_type: ClassVar[str] = "escrow.funded"

    escrow_id: uuid.UUID
    booking_id: uuid.UUID
    project_id: uuid.UUID
    client_id: uuid.UUID
    worker_id: uuid.UUID
    payment_id: uuid.UUID
    amount_cents: int
    fee_cents: int
    net_cents: int
    currency: str


class EscrowReleased(EventData):
    """Money of the hold went to the worker: `net_cents` to them, `fee_cents` to the platform.

    `amount_cents` is the part of the hold released (the whole hold, or the worker's part of a
    dispute split), and `amount_cents == fee_cents + net_cents`.
    """

    event_type: ClassVar[str] = "escrow.released"

    escrow_id: uuid.UUID
    booking_id: uuid.UUID
    project_id: uuid.UUID
    worker_id: uuid.UUID
    payout_id: uuid.UUID
    amount_cents: int
    fee_cents: int
    net_cents: int
    currency: str
    # Set when a dispute resolution released it rather than the client.
    dispute_id: uuid.UUID | None = None


class EscrowRefunded(EventData):
    """Money of the hold went back to the client's card, fee included (no fee on refunds)."""

    event_type: ClassVar[str] = "escrow.refunded"

    escrow_id: uuid.UUID
    booking_id: uuid.UUID
    project_id: uuid.UUID
    client_id: uuid.UUID
    refund_id: uuid.UUID
    amount_cents: int
    currency: str
    reason: RefundReason
    dispute_id: uuid.UUID | None = None
