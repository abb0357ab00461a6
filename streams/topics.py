"""The topic layout: one Kafka topic per aggregate family, keyed by the aggregate's id.

Kafka orders one partition of one topic and nothing more, so every event of one aggregate travels
on one topic, on the partition its key hashes to: a gig's events (project, bids, booking, payment,
escrow, dispute) are all on `<prefix>.gigs`, partitioned by the project id, in the order they
committed (packed many to a message, streams/packing.py). The envelope's `type`
says what each one is, and its `sequence` (1, 2, 3, … per aggregate, assigned by the outbox in the
writing transaction) lets a fold tell a redelivery (sequence it has applied) from a new event.

| stream    | key            | event types                                                      |
|-----------|----------------|------------------------------------------------------------------|
| gigs      | project id     | project.*, bid.*, booking.created, payment.*, escrow.*, dispute.* |
| users     | user id        | user.registered, profile.updated                                 |
| reviews   | reviewee id    | review.created (the ratings fold runs per reviewee)              |
| messages  | conversation id| message.sent                                                     |
| ratings   | worker id      | rating.updated (derived by the ratings agent)                    |
| matches   | project id     | match.scored (derived by the matching agent)                     |

Consumers that want one type (the RabbitMQ feed, routing key = type) filter on the envelope.
"""

from __future__ import annotations

from typing import Final

from streams.events import EVENT_TYPES

STREAMS: Final[dict[str, tuple[str, ...]]] = {
    "gigs": (
        "project.created",
        "project.updated",
        "project.status_changed",
        "project.delivered",
        "bid.submitted",
        "bid.accepted",
        "bid.withdrawn",
        "bid.expired",
        "project.deadline_approaching",
        "booking.created",
        "payment.completed",
        "payment.failed",
        "escrow.funded",
        "escrow.released",
        "escrow.refunded",
        "dispute.opened",
        "dispute.resolved",
    ),
    "users": ("user.registered", "profile.updated"),
    "reviews": ("review.created",),
    "messages": ("message.sent",),
    "ratings": ("rating.updated",),
    "matches": ("match.scored",),
}

# Derived streams are written by agents, not by the outbox: their events have no outbox sequence.
DERIVED_STREAMS: Final = frozenset({"ratings", "matches"})

_STREAM_OF: Final[dict[str, str]] = {
    event_type: stream for stream, types in STREAMS.items() for event_type in types
}
assert set(_STREAM_OF) == set(EVENT_TYPES), "every event type belongs to exactly one stream"

DEAD_LETTER_SUFFIX: Final = "deadletter"


def stream_of(event_type: str) -> str:
    """The aggregate family `event_type` travels in; KeyError for a type we do not publish."""
    try:
        return _STREAM_OF[event_type]
    except KeyError:
        raise KeyError(f"unknown event type {event_type!r}") from None


def stream_topic(stream: str, prefix: str = "tulifo") -> str:
    """The Kafka topic of one stream: `tulifo.gigs`."""
    if stream not in STREAMS:
        raise KeyError(f"unknown stream {stream!r}")
    return f"{prefix}.{stream}"


def topic_of(event_type: str, prefix: str = "tulifo") -> str:
    """The Kafka topic that carries `event_type`."""
    return stream_topic(stream_of(event_type), prefix)


def dead_letter_topic(prefix: str = "tulifo") -> str:
    """Where poison events go, with the reason in their headers."""
    return f"{prefix}.{DEAD_LETTER_SUFFIX}"


def all_topics(prefix: str = "tulifo") -> list[str]:
    """Every topic of the layout, plus the dead-letter topic."""
    return [stream_topic(stream, prefix) for stream in STREAMS] + [dead_letter_topic(prefix)]


# --- live dashboards: Redis pub/sub channels, not Kafka topics --------------------------------
# The live agent (agents/live.py) publishes each update on the channels of the users it is for
# and on the admins'; every API process subscribes once (api/dashboard/hub.py). Chat keeps to
# `tulifo:chat:`.
DASHBOARD_CHANNEL_PREFIX: Final = "tulifo:dashboard:"
DASHBOARD_ADMIN_CHANNEL: Final = f"{DASHBOARD_CHANNEL_PREFIX}admin"
DASHBOARD_USER_CHANNEL_PREFIX: Final = f"{DASHBOARD_CHANNEL_PREFIX}user:"


def dashboard_user_channel(user_id: object) -> str:
    """The live channel of one user: `tulifo:dashboard:user:<id>`."""
    return f"{DASHBOARD_USER_CHANNEL_PREFIX}{user_id}"
