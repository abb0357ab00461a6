"""Records of the projects domain: projects and the bids on them (one domain, DESIGN.md §3).

Every record here is keyed (envelope `aggregate_id`) by the project id, bids included: the
events of one project, whatever their type, share a key and so a partition in every topic, and
an agent that joins them needs no repartitioning. Money is integer cents plus its currency.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import ClassVar

from pydantic import Field

from streams.events import EventData


class ProjectCreated(EventData):
    event_type: ClassVar[str] = "project.created"

    project_id: uuid.UUID
    client_id: uuid.UUID
    title: str
    # Search and matching (TF-IDF over title, description and skills) index from this record.
    description: str
    budget_cents: int
    currency: str
    required_skills: list[str]
    deadline: datetime | None
    status: str


class ProjectUpdated(EventData):
    """The client edited an open project; like `profile.updated`, only what changed."""

    event_type: ClassVar[str] = "project.updated"

    project_id: uuid.UUID
    client_id: uuid.UUID
    # snake_case field names (e.g. "budget_cents", "required_skills") and their new values,
    # JSON-ready; a budget change always comes with the currency, so amounts are never bare.
    changed: list[str]
    project: dict[str, object]


class ProjectStatusChanged(EventData):
    """A move of the state machine that has no seed event of its own: start of work
    (awarded→in_progress), a revision request (delivered→in_progress), the client accepting the
    delivery (delivered→completed) and cancellation. Awarding is `bid.accepted`; delivery is
    `project.delivered`."""

    event_type: ClassVar[str] = "project.status_changed"

    project_id: uuid.UUID
    client_id: uuid.UUID
    worker_id: uuid.UUID | None
    from_status: str
    to_status: str
    # Bids still pending when an open project was cancelled; they are rejected with it.
    rejected_bid_ids: list[uuid.UUID] = Field(default_factory=list)


class ProjectDelivered(EventData):
    event_type: ClassVar[str] = "project.delivered"

    project_id: uuid.UUID
    client_id: uuid.UUID
    worker_id: uuid.UUID
    booking_id: uuid.UUID
    # Only what the client is asked to accept now; the money stays in escrow until release.
    agreed_amount_cents: int
    currency: str


class BidSubmitted(EventData):
    event_type: ClassVar[str] = "bid.submitted"

    bid_id: uuid.UUID
    project_id: uuid.UUID
    client_id: uuid.UUID
    worker_id: uuid.UUID
    amount_cents: int
    currency: str
    delivery_days: int


class BidAccepted(EventData):
    """The project is awarded to this bid's worker; every other pending bid was rejected in
    the same transaction (`rejected_bid_ids`), so no separate rejection events exist."""

    event_type: ClassVar[str] = "bid.accepted"

    bid_id: uuid.UUID
    project_id: uuid.UUID
    client_id: uuid.UUID
    worker_id: uuid.UUID
    amount_cents: int
    currency: str
    delivery_days: int
    rejected_bid_ids: list[uuid.UUID]


class BidWithdrawn(EventData):
    event_type: ClassVar[str] = "bid.withdrawn"

    bid_id: uuid.UUID
    project_id: uuid.UUID
    client_id: uuid.UUID
    worker_id: uuid.UUID


class BidExpired(EventData):
    """A pending bid nobody accepted within `bid_expiry_seconds` of its submission: it can no
    longer be accepted, and its worker may bid again (the `bid_expiry` job, api/jobs/kinds.py)."""

    event_type: ClassVar[str] = "bid.expired"

    bid_id: uuid.UUID
    project_id: uuid.UUID
    client_id: uuid.UUID
    worker_id: uuid.UUID


class ProjectDeadlineApproaching(EventData):
    """An awarded project's deadline is `deadline_reminder_seconds` away (the
    `deadline_reminder` job): both parties are told."""

    event_type: ClassVar[str] = "project.deadline_approaching"

    project_id: uuid.UUID
    client_id: uuid.UUID
    worker_id: uuid.UUID
    deadline: datetime
