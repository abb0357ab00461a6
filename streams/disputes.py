"""Records of the disputes domain. Keyed by the project id (see streams/payments.py)."""

from __future__ import annotations

import uuid
from typing import ClassVar, Literal

from streams.events import EventData

Resolution = Literal["release", "refund", "split"]


class DisputeOpened(EventData):
    """A participant disputed a project; its escrow hold is frozen until an admin resolves it."""

    event_type: ClassVar[str] = "dispute.opened"

    dispute_id: uuid.UUID
    project_id: uuid.UUID
    escrow_id: uuid.UUID
    client_id: uuid.UUID
    worker_id: uuid.UUID
    opened_by: uuid.UUID
    reason: str
    evidence_count: int
    previous_project_status: str
    amount_cents: int
    currency: str


class DisputeResolved(EventData):
    """An admin decided where the held money goes; the matching `escrow.released` and/or
    `escrow.refunded` records carry the money movements themselves.

    worker_amount_cents + client_amount_cents == the amount held; the worker receives
    worker_amount_cents - fee_cents.
    """

    event_type: ClassVar[str] = "dispute.resolved"

    dispute_id: uuid.UUID
    project_id: uuid.UUID
    escrow_id: uuid.UUID
    client_id: uuid.UUID
    worker_id: uuid.UUID
    resolution: Resolution
    worker_amount_cents: int
    client_amount_cents: int
    fee_cents: int
    currency: str
    resolved_by: uuid.UUID
    project_status: str
