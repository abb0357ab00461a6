"""The event envelope every domain event travels in, and the catalog of event types.

Which topic carries which type, and under which key, is streams/topics.py.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Final

from pydantic import BaseModel, ConfigDict, Field

# Every event type the system publishes (DESIGN.md §3). The seed's eight come first.
EVENT_TYPES: Final[tuple[str, ...]] = (
    "user.registered",
    "project.created",
    "bid.submitted",
    "project.delivered",
    "booking.created",
    "payment.completed",
    "payment.failed",
    "review.created",
    "bid.accepted",
    "escrow.funded",
    "escrow.released",
    "escrow.refunded",
    "dispute.opened",
    "dispute.resolved",
    "message.sent",
    "profile.updated",
    "rating.updated",
    "match.scored",
    # The rest of the project and bid lifecycle: every state change has an event, so the event
    # store can rebuild the read models (§4). `project.status_changed` carries the moves that
    # have no seed event of their own (start, revision, completion by the client, cancellation).
    "project.updated",
    "project.status_changed",
    "bid.withdrawn",
    # A pending bid nobody accepted within its expiry (the `bid_expiry` job).
    "bid.expired",
    # The `deadline_reminder` job: an awarded project's deadline is near.
    "project.deadline_approaching",
)


class Event(BaseModel):
    """The envelope. `data` holds the type's own record, validated on the way in and out."""

    model_config = ConfigDict(frozen=True)

    event_id: uuid.UUID
    type: str
    version: int = Field(default=1, ge=1)
    occurred_at: datetime
    aggregate_id: str
    actor_id: str | None = None
    # The aggregate's own counter (1, 2, 3, …), given by the outbox in the writing transaction:
    # commit order within the aggregate. Folds keep the last one they applied and skip anything
    # at or below it, which is what makes a redelivery harmless. None on derived events.
    sequence: int | None = Field(default=None, ge=1)
    data: dict[str, Any]


class PoisonEvent(Exception):
    """This event cannot be processed (now or ever): dead-letter it with this reason."""


class EventData(BaseModel):
    """Base of every per-type record; subclasses name their `event_type` and `version`."""

    model_config = ConfigDict(frozen=True)

    event_type: ClassVar[str]
    version: ClassVar[int] = 1


def new_event(
    data: EventData, *, aggregate_id: str | uuid.UUID, actor_id: str | uuid.UUID | None = None
) -> Event:
    """Wrap a record in a fresh envelope with a new event_id and the current time."""
    return Event(
        event_id=uuid.uuid4(),
        type=type(data).event_type,
        version=type(data).version,
        occurred_at=datetime.now(UTC),
        aggregate_id=str(aggregate_id),
        actor_id=str(actor_id) if actor_id is not None else None,
        data=data.model_dump(mode="json"),
    )
