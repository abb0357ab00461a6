"""How every agent consumes: decode the envelope, run the handler, retry what may recover,
dead-letter what never will, and only then ack.

Policy (DESIGN.md §4, "at-least-once, effects exactly once"):
- An agent reads one stream's topic (streams/topics.py) and handles the types it names; the
  stream's other types are passed over. A message carries a pack of events (streams/packing.py),
  handled one by one in order. An envelope that is not an `Event`, or carries a type its stream
  does not, is poison: it goes alone to the dead-letter topic with the reason and where it came
  from (topic, partition, offset, index in the pack), and the rest of the pack goes on. A message
  that is no pack at all is dead-lettered whole.
- A failing dependency (MongoDB, SMTP, a `RetryLater`) is retried in place with capped exponential
  backoff, `agent_retry_attempts` times (~35 s of waiting by default). The partition waits, which
  keeps its order and is what we want while a dependency is down: every event would fail anyway.
  The budget stays under Faust's rebalance timeout (60 s) per event; a rebalance waits for the
  message in hand, so a pack whose every event waits out a dead dependency can outlast it, and
  the group then hands the partition on (delivered again; handlers are idempotent). After the
  last attempt the event is dead-lettered with the reason; re-publishing the dead letter runs
  it again, and handlers are idempotent, so that is safe.
- Any other exception is a bug or a bad event: dead-lettered at once rather than crashing the
  agent (Faust acks the event an agent crashed on, which would lose it).
- Acks are manual (`stream.noack()`): a message is acked after the effects or dead letters of
  all its events are done. A worker stopped mid-retry leaves it unacked, so it is delivered again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import faust
import orjson
import redis.asyncio as aioredis
from prometheus_client import Counter
from pydantic import ValidationError
from pymongo.errors import ConnectionFailure, ExecutionTimeout, WTimeoutError

from bridges.email import EmailUnavailable, Mailer, SmtpMailer
from infrastructure.mongo import MongoDatabase, create_mongo_client, mongo_database
from infrastructure.settings import Settings
from streams.events import Event
from streams.events import PoisonEvent as PoisonEvent  # re-exported: agents raise it
from streams.packing import event_headers, is_pack, unpack
from streams.topics import STREAMS, dead_letter_topic, stream_topic

log = logging.getLogger(__name__)

T = TypeVar("T")
Handler = Callable[[Event], Awaitable[None]]

# A reason longer than this is cut: it travels in a Kafka header.
MAX_REASON_CHARS = 1000
FIRST_RETRY_DELAY_S = 0.5

AGENT_EVENTS = Counter(
    "tulifo_agent_events_total", "Events an agent finished with", ["agent", "outcome"]
)


class RetryLater(Exception):
    """Not possible right now (e.g. another worker holds the claim); try again after a pause."""


# Errors that say "a dependency is unavailable", not "this event is wrong".
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    RetryLater,
    ConnectionFailure,  # also AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError
    ExecutionTimeout,
    WTimeoutError,
    EmailUnavailable,
    OSError,
    TimeoutError,
)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8
    first_delay_s: float = FIRST_RETRY_DELAY_S
    max_delay_s: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            attempts=settings.agent_retry_attempts, max_delay_s=settings.agent_retry_max_seconds
        )

    def delay(self, failed_attempt: int) -> float:
        """The pause after the `failed_attempt`-th failure (1-based): doubling, capped."""
        return float(min(self.max_delay_s, self.first_delay_s * 2 ** min(failed_attempt - 1, 30)))


@dataclass(frozen=True)
class AgentDeps:
    """Everything agents use, created once per worker process (nothing connects at import)."""

    settings: Settings
    mongo: MongoDatabase
    mailer: Mailer
    retry: RetryPolicy
    # Live updates (chat, dashboards) go out over Redis pub/sub to every API process; None in
    # tests of agents that publish nothing live. The client connects on first use.
    redis: aioredis.Redis | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> AgentDeps:
        client = create_mongo_client(settings)
        return cls(
            settings=settings,
            mongo=mongo_database(client, settings),
            mailer=SmtpMailer(settings),
            retry=RetryPolicy.from_settings(settings),
            redis=aioredis.from_url(settings.redis_url, decode_responses=True),
        )


async def with_retries(
    step: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    what: str,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run `step`, retrying transient failures; after the last attempt raise `PoisonEvent`."""
    attempt = 1
    while True:
        try:
            return await step()
        except TRANSIENT_ERRORS as exc:
            if attempt >= policy.attempts:
                raise PoisonEvent(
                    f"{what}: gave up after {attempt} attempts: {type(exc).__name__}: {exc}"
                ) from exc
            delay = policy.delay(attempt)
            log.warning(
                "%s failed (attempt %d of %d), retrying in %.1fs: %s: %s",
                what,
                attempt,
                policy.attempts,
                delay,
                type(exc).__name__,
                exc,
            )
            await sleep(delay)
            attempt += 1


async def holding(
    step: Callable[[], Awaitable[T]],
    *,
    retry_on: tuple[type[BaseException], ...],
    policy: RetryPolicy,
    what: str,
) -> T:
    """Run `step` until it succeeds, pausing (capped backoff) after each `retry_on` failure: a
    batch that waits, unacked, while what it needs is down. Back-pressure, not loss; unlike
    `with_retries` it never gives up, since every later event would fail the same way."""
    failures = 0
    while True:
        try:
            return await step()
        except retry_on as exc:
            failures += 1
            delay = policy.delay(failures)
            log.warning(
                "%s failed (%s: %s); holding the batch, retrying in %.1fs",
                what,
                type(exc).__name__,
                exc,
                delay,
            )
            await asyncio.sleep(delay)


def validate_event(item: Any, *, stream: str) -> Event:
    """One envelope of a message (as `unpack` decoded it), validated; or `PoisonEvent` saying
    why it is not one."""
    try:
        event = Event.model_validate(item)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'envelope'}: {error['msg']}"
            for error in exc.errors()
        )
        raise PoisonEvent(f"not an event envelope: {problems}") from exc
    if event.type not in STREAMS[stream]:
        raise PoisonEvent(f"event type {event.type!r} on the {stream!r} stream")
    return event


def header_value(
    headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None, name: str
) -> str | None:
    """One header of a Kafka message, decoded; None when absent."""
    items = headers.items() if isinstance(headers, Mapping) else headers or ()
    for key, value in items:
        if key == name:
            return bytes(value).decode(errors="replace")
    return None


async def handle_event(
    item: Any, *, stream: str, handlers: Mapping[str, Handler]
) -> tuple[Event | None, str | None]:
    """Validate one envelope and run its type's handler (if any); returns the event (if it is
    one) and why to dead-letter it (None when done)."""
    event: Event | None = None
    try:
        event = validate_event(item, stream=stream)
        handler = handlers.get(event.type)
        if handler is not None:
            await handler(event)
    except PoisonEvent as exc:
        return event, str(exc)
    except Exception as exc:
        log.exception("unexpected error handling an event; dead-lettering it")
        return event, f"unexpected {type(exc).__name__}: {exc}"
    return event, None


def dead_letter_headers(
    original: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None,
    *,
    reason: str,
    agent: str,
    topic: str,
    partition: int,
    offset: int,
    now: datetime,
) -> list[tuple[str, bytes]]:
    """The original headers, plus why and where from (a replay knows where to send it back)."""
    items = list(original.items() if isinstance(original, Mapping) else original or ())
    ours = {
        "dead_letter_reason": reason[:MAX_REASON_CHARS],
        "dead_letter_agent": agent,
        "original_topic": topic,
        "original_partition": str(partition),
        "original_offset": str(offset),
        "dead_lettered_at": now.isoformat(),
    }
    kept = [(key, value) for key, value in items if key not in ours]
    return kept + [(key, value.encode()) for key, value in ours.items()]


class DeadLetters:
    """The dead-letter topic, as seen from the worker."""

    def __init__(self, app: faust.App, settings: Settings, policy: RetryPolicy) -> None:
        self.topic = app.topic(
            dead_letter_topic(settings.topic_prefix), key_serializer="raw", value_serializer="raw"
        )
        self.policy = policy
        self.ack_timeout_s = settings.kafka_ack_timeout_seconds

    async def send(
        self, message: Any, *, agent: str, reason: str, item: Any = None, index: int | None = None
    ) -> None:
        """Park `message` with `reason`, or only its `index`-th envelope `item` when it is a pack
        (streams/packing.py); keeps trying while Kafka is down (nothing else can run)."""
        key, value, headers = parked(message, agent=agent, reason=reason, item=item, index=index)
        failures = 0
        while True:
            try:
                # force=True: publish now, not attached to the current event until its commit.
                pending = await self.topic.send(key=key, value=value, headers=headers, force=True)
                async with asyncio.timeout(self.ack_timeout_s):
                    await pending
                return
            except Exception as exc:
                failures += 1
                delay = self.policy.delay(failures)
                log.warning("dead letter not acked (%s), retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)


def parked(
    message: Any, *, agent: str, reason: str, item: Any = None, index: int | None = None
) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """The dead letter of a Kafka `message` (anything with key, value, headers, topic,
    partition, offset: Faust's or aiokafka's): its key, value and headers, or, for the
    `index`-th envelope `item` of a pack, that envelope alone. Logged as it is made."""
    key, value = message.key, message.value
    original: Sequence[tuple[str, bytes]] = list(message.headers or ())
    if index is not None:
        # One event of a pack goes alone, as a single envelope: sent back for another try,
        # it is that event again, not its neighbours.
        value = orjson.dumps(item)
        original = [*event_headers(item), ("original_index", str(index).encode())]
        if isinstance(item, dict) and isinstance(item.get("aggregate_id"), str):
            key = item["aggregate_id"].encode()
    log.error(
        "dead-lettering %s[%d]@%d%s: %s",
        message.topic,
        message.partition,
        message.offset,
        "" if index is None else f" #{index}",
        reason,
        extra={"agent": agent},
    )
    headers = dead_letter_headers(
        original,
        reason=reason,
        agent=agent,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        now=datetime.now(UTC),
    )
    return key, value, headers


def close_at_shutdown(app: faust.App, close: Callable[[], Awaitable[None]]) -> None:
    """Run `close` when the worker shuts down (Faust's `on_before_shutdown`: the consumer has
    stopped and the streams have drained); an error there is logged, never in the way of the
    rest."""

    async def on_shutdown(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        try:
            await close()
        except Exception:
            log.exception("closing %s at shutdown failed", getattr(close, "__qualname__", close))

    app.on_before_shutdown.connect(on_shutdown)


def subscribe(
    app: faust.App,
    deps: AgentDeps,
    *,
    stream: str,
    name: str,
    handlers: Mapping[str, Handler],
) -> None:
    """Run each event of `stream` whose type has a handler, in partition order, under the policy
    above; the stream's other types are passed over. A message is acked once every event it
    carries (a pack, streams/packing.py) is handled or dead-lettered."""
    unknown = set(handlers) - set(STREAMS[stream])
    if unknown:
        raise ValueError(f"{sorted(unknown)} do not travel on the {stream!r} stream")
    topic = app.topic(
        stream_topic(stream, deps.settings.topic_prefix),
        key_serializer="raw",
        value_serializer="raw",
    )
    dead_letters = DeadLetters(app, deps.settings, deps.retry)
    wanted: Collection[str] = frozenset(handlers)
    ours: Collection[str] = frozenset(STREAMS[stream])

    # One actor per worker (concurrency=1): a second would reorder events of one aggregate.
    async def consume(stream_: faust.StreamT[bytes]) -> None:
        # noack() is on the concrete Stream; the StreamT that Faust types agents with lacks it.
        manual = cast(faust.Stream[bytes], stream_).noack()
        async for item in manual.events():
            message = item.message
            try:
                envelopes = unpack(message.value)
            except PoisonEvent as exc:
                await dead_letters.send(message, agent=name, reason=str(exc))
                AGENT_EVENTS.labels(agent=name, outcome="dead_lettered").inc()
                await manual.ack(item)
                continue
            packed = is_pack(message.value)
            for index, envelope in enumerate(envelopes):
                announced = envelope.get("type") if isinstance(envelope, dict) else None
                if announced in ours and announced not in wanted:
                    continue  # the stream's other types: not even validated
                event, reason = await handle_event(envelope, stream=stream, handlers=handlers)
                if reason is not None:
                    await dead_letters.send(
                        message,
                        agent=name,
                        reason=reason,
                        item=envelope,
                        index=index if packed else None,
                    )
                AGENT_EVENTS.labels(
                    agent=name, outcome="processed" if reason is None else "dead_lettered"
                ).inc()
                if event is not None and reason is None:
                    log.debug("%s handled %s", name, event.event_id)
            await manual.ack(item)

    consume.__qualname__ = name  # how Faust labels the agent in its logs
    app.agent(topic, name=name, concurrency=1)(consume)
