"""Live dashboards: the events a dashboard shows, addressed to the users who may see them and
published over Redis pub/sub to every API process, which streams each to the open pages of its
addressees (api/dashboard/hub.py, GET /api/dashboard/stream).

Who sees what (issue 9, item 6):
- a project's client: the project's `match.scored`, and the escrow of its booking;
- a worker: their own `rating.updated`, the escrow of their bookings (their earnings) and their
  bids (submitted, accepted, withdrawn, expired, rejected);
- admins: every one of these events (`tulifo:dashboard:admin`);
- everyone: their own in-app notifications (published by agents/notifications.py through
  `publish_notification`). Admins get their own notifications, not everybody's.

Channels are `tulifo:dashboard:user:<user id>` and `tulifo:dashboard:admin`; chat keeps to
`tulifo:chat:`. An event names most of its parties; what it does not (the client of a release,
the worker of a refund, the workers of the bids an acceptance rejected) is read from
PostgreSQL, one small query on a pool of this agent's own.

Best effort: a page loads a fresh snapshot whenever it (re)connects, so a live message lost costs
what a reload fixes. Redis unavailable: logged, the event acked, and Redis left alone for a few
seconds, so a dead server does not cost every event a connect timeout and stall the partition.
Once per event: a Lua script claims `tulifo:dashboard:sent:<id>` (kept an hour) and publishes in
the same step, so a redelivered event publishes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import asyncpg
import faust
import orjson
import redis.asyncio as aioredis
from pydantic import ValidationError
from pydantic.alias_generators import to_camel
from redis.exceptions import RedisError

from agents.runtime import AgentDeps, PoisonEvent, close_at_shutdown, subscribe
from infrastructure.database import create_pool
from streams.escrow import EscrowFunded, EscrowRefunded, EscrowReleased
from streams.events import Event, EventData
from streams.matching import MatchScored
from streams.projects import (
    BidAccepted,
    BidExpired,
    BidSubmitted,
    BidWithdrawn,
    ProjectStatusChanged,
)
from streams.ratings import RatingUpdated
from streams.topics import DASHBOARD_ADMIN_CHANNEL as ADMIN_CHANNEL
from streams.topics import DASHBOARD_CHANNEL_PREFIX
from streams.topics import dashboard_user_channel as user_channel
from tables.sink import PG_UNAVAILABLE

log = logging.getLogger(__name__)

# A key, not a channel: the marker that an update was published (see the module's doc).
SENT_KEY_PREFIX: Final = f"{DASHBOARD_CHANNEL_PREFIX}sent:"
# As long as an event may still be published at all (MAX_AGE, below): older ones are skipped
# anyway, so a longer-lived marker would only hold Redis memory, one key per live event.
SENT_TTL_S: Final = 3600
# One publish must not hold the partition: Redis answers in well under a millisecond.
PUBLISH_TIMEOUT_S: Final = 2.0
# After a failure Redis is left alone this long; the events meanwhile are not published.
REDIS_COOLDOWN_S: Final = 5.0
# Older events are history, not news: a new consumer group reads every topic from its start,
# and pages would otherwise be flooded with the whole past. An hour covers a worker's restart.
MAX_AGE: Final = timedelta(hours=1)
# One lookup per event at most, one event at a time per agent: two connections are plenty.
POOL_SIZE: Final = 2

# What each type is, as a record: validated before it is addressed (a bad record is poison).
RECORDS: Final[dict[str, type[EventData]]] = {
    "match.scored": MatchScored,
    "rating.updated": RatingUpdated,
    "escrow.funded": EscrowFunded,
    "escrow.released": EscrowReleased,
    "escrow.refunded": EscrowRefunded,
    "bid.submitted": BidSubmitted,
    "bid.accepted": BidAccepted,
    "bid.withdrawn": BidWithdrawn,
    "bid.expired": BidExpired,
    # Admins see every move; workers only the end of the bids a cancellation rejected.
    "project.status_changed": ProjectStatusChanged,
}
# The agent per stream, and the types it forwards.
AGENT_STREAMS: Final[dict[str, tuple[str, ...]]] = {
    "matches": ("match.scored",),
    "ratings": ("rating.updated",),
    "gigs": (
        "escrow.funded",
        "escrow.released",
        "escrow.refunded",
        "bid.submitted",
        "bid.accepted",
        "bid.withdrawn",
        "bid.expired",
        "project.status_changed",
    ),
}

# KEYS[1]: the sent marker; ARGV[1]: its TTL, ARGV[2]: the message, ARGV[3..]: the channels.
# Claim and publish in one step: a crash between the two cannot leave a claim unpublished.
_CLAIM_AND_PUBLISH = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  for i = 3, #ARGV do redis.call('PUBLISH', ARGV[i], ARGV[2]) end
  return 1
end
return 0
"""

_PARTIES_OF_HOLD = "SELECT client_id, worker_id FROM escrow_holds WHERE id = $1"
_WORKERS_OF_BIDS = "SELECT DISTINCT worker_id FROM bids WHERE id = ANY($1::uuid[])"


# --- pure functions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Addressees:
    """Who an event goes to: the users it names, and what must be looked up for the rest."""

    users: frozenset[uuid.UUID]
    # The hold whose parties are missing from the event (a release names no client, a refund
    # no worker).
    hold_id: uuid.UUID | None = None
    # Bids whose workers are to be told their bid was rejected.
    rejected_bids: tuple[uuid.UUID, ...] = field(default_factory=tuple)


def record_of(event: Event) -> EventData:
    """The event's record, validated; `PoisonEvent` when it is not one of its type."""
    try:
        return RECORDS[event.type].model_validate(event.data)
    except ValidationError as exc:
        raise PoisonEvent(f"{event.type}: invalid record: {exc.error_count()} errors") from exc


def addressees(event: Event) -> Addressees:
    """The users `event` is for, from the event alone (see the module's rules)."""
    record = record_of(event)
    match record:
        case MatchScored():
            return Addressees(frozenset({record.client_id}))
        case RatingUpdated():
            return Addressees(frozenset({record.user_id}))
        case EscrowFunded():
            return Addressees(frozenset({record.client_id, record.worker_id}))
        case EscrowReleased():
            return Addressees(frozenset({record.worker_id}), hold_id=record.escrow_id)
        case EscrowRefunded():
            return Addressees(frozenset({record.client_id}), hold_id=record.escrow_id)
        case BidSubmitted() | BidWithdrawn() | BidExpired():
            return Addressees(frozenset({record.worker_id}))
        case BidAccepted():
            return Addressees(
                frozenset({record.worker_id}), rejected_bids=tuple(record.rejected_bid_ids)
            )
        case ProjectStatusChanged():
            return Addressees(frozenset(), rejected_bids=tuple(record.rejected_bid_ids))
    raise PoisonEvent(f"{event.type} is not a dashboard event")


def channels_for(users: Iterable[uuid.UUID], *, admins: bool = True) -> list[str]:
    """The channels of `users` (sorted, so a message's fan-out reads the same every time), and
    the admins' channel."""
    channels = sorted({user_channel(user) for user in users})
    return [*channels, ADMIN_CHANNEL] if admins else channels


def _camel(value: Any) -> Any:
    """The record in the API's spelling (camelCase keys, api/schemas.py), recursively."""
    if isinstance(value, dict):
        return {to_camel(str(key)): _camel(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_camel(item) for item in value]
    return value


def live_message(event: Event) -> dict[str, Any]:
    """What a dashboard receives for `event`: its id (pages drop one seen before), type, time
    and record."""
    return {
        "id": str(event.event_id),
        "type": event.type,
        "occurredAt": event.occurred_at.isoformat(),
        "data": _camel(event.data),
    }


def notification_message(document: dict[str, Any]) -> dict[str, Any]:
    """An in-app notification (agents/notifications.py `in_app_document`) as a live message, in
    the shape GET /api/notifications lists it."""
    created = document["createdAt"]
    return {
        "id": str(document["_id"]),
        "type": "notification",
        "occurredAt": created.isoformat() if isinstance(created, datetime) else str(created),
        "data": {
            "id": str(document["_id"]),
            "type": document.get("type", ""),
            "title": document.get("title", ""),
            "body": document.get("body", ""),
            "url": document.get("url", ""),
            "read": bool(document.get("read", False)),
            "createdAt": created.isoformat() if isinstance(created, datetime) else str(created),
        },
    }


def is_stale(event: Event, *, now: datetime) -> bool:
    return event.occurred_at < now - MAX_AGE


# --- publishing -------------------------------------------------------------------------------


class LivePublisher:
    """Publishes live messages, once per id, without ever failing or stalling its caller."""

    def __init__(self, redis: aioredis.Redis | None) -> None:
        self.redis = redis
        self._script: Any = None
        # time.monotonic() before which Redis is not tried again.
        self._quiet_until = 0.0

    async def publish(
        self, *, message_id: str, message: dict[str, Any], channels: list[str]
    ) -> bool:
        """Publish `message` on `channels` unless it was published before; True when this call
        published it. False, logged, when Redis is unavailable (best effort)."""
        if self.redis is None or not channels:
            return False
        if time.monotonic() < self._quiet_until:
            return False
        if self._script is None:
            self._script = self.redis.register_script(_CLAIM_AND_PUBLISH)
        body = orjson.dumps(message).decode()
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                done = await self._script(
                    keys=[f"{SENT_KEY_PREFIX}{message_id}"], args=[SENT_TTL_S, body, *channels]
                )
        except (RedisError, OSError, TimeoutError) as exc:
            self._quiet_until = time.monotonic() + REDIS_COOLDOWN_S
            log.warning(
                "live update %s not published (%s: %s); Redis left alone for %.0fs",
                message_id,
                type(exc).__name__,
                exc,
                REDIS_COOLDOWN_S,
            )
            return False
        return bool(done)


class LiveFanout:
    """The dashboard agent's handler: address an event, look up what it lacks, publish."""

    def __init__(
        self,
        deps: AgentDeps,
        *,
        pool: asyncpg.Pool | None = None,
        publisher: LivePublisher | None = None,
    ) -> None:
        self.deps = deps
        self.publisher = publisher or LivePublisher(deps.redis)
        self._pool = pool
        # The three agents share this fan-out: one of them makes the pool.
        self._pool_lock = asyncio.Lock()

    async def _lookup(self, wanted: Addressees) -> set[uuid.UUID]:
        """The users the event does not name. PostgreSQL unavailable: logged, and the event goes
        to whom it names (live updates are best effort; the write side holds the truth)."""
        if wanted.hold_id is None and not wanted.rejected_bids:
            return set()
        try:
            async with self._pool_lock:
                if self._pool is None:
                    self._pool = await create_pool(
                        self.deps.settings.database_url, min_size=1, max_size=POOL_SIZE
                    )
            found: set[uuid.UUID] = set()
            async with self._pool.acquire() as conn:
                if wanted.hold_id is not None:
                    row = await conn.fetchrow(_PARTIES_OF_HOLD, wanted.hold_id)
                    if row is not None:
                        found.update((row["client_id"], row["worker_id"]))
                if wanted.rejected_bids:
                    rows = await conn.fetch(_WORKERS_OF_BIDS, list(wanted.rejected_bids))
                    found.update(row["worker_id"] for row in rows)
            return found
        except PG_UNAVAILABLE as exc:
            log.warning("live update parties not looked up (%s: %s)", type(exc).__name__, exc)
            return set()

    async def handle(self, event: Event) -> bool:
        """Publish `event` to its addressees and the admins; True when this call published it."""
        wanted = addressees(event)
        if is_stale(event, now=datetime.now(UTC)):
            return False
        users = set(wanted.users) | await self._lookup(wanted)
        return await self.publisher.publish(
            message_id=str(event.event_id),
            message=live_message(event),
            channels=channels_for(users),
        )

    async def close(self) -> None:
        if self._pool is not None:
            # Forgotten first: an event still handled after this makes a new pool, not an error.
            pool, self._pool = self._pool, None
            await pool.close()


async def publish_notification(publisher: LivePublisher, document: dict[str, Any]) -> bool:
    """Put a stored in-app notification on its user's dashboard (not the admins': it is the
    user's own)."""
    return await publisher.publish(
        message_id=str(document["_id"]),
        message=notification_message(document),
        channels=[user_channel(document["userId"])],
    )


def register(app: faust.App, deps: AgentDeps) -> None:
    fanout = LiveFanout(deps)
    close_at_shutdown(app, fanout.close)

    async def on_event(event: Event) -> None:
        await fanout.handle(event)

    for stream, types in AGENT_STREAMS.items():
        subscribe(
            app, deps, stream=stream, name=f"live.{stream}", handlers=dict.fromkeys(types, on_event)
        )
