"""How every agent consumes: decode the envelope, run the handler, retry what may recover,
dead-letter what never will, and only then ack.

Policy (DESIGN.md §4, "at-least-once, effects exactly once"):
- An agent reads one stream's topic (streams/topics.py) and handles the types it names; the
  stream's other types are acked untouched. A message that is not an `Event` envelope, or
  carries a type its stream does not, is poison: it goes to the dead-letter topic with the
  reason and where it came from, and the partition moves.
- A failing dependency (MongoDB, SMTP, a `RetryLater`) is retried in place with capped exponential
  backoff, `agent_retry_attempts` times (~35 s of waiting by default). The partition waits, which
  keeps its order and is what we want while a dependency is down: every event would fail anyway.
  The budget stays under Faust's rebalance timeout (60 s): a rebalance waits for the event in
  hand to be acked. After the last attempt the event is dead-lettered with the reason;
  re-publishing the dead letter runs it again, and handlers are idempotent, so that is safe.
- Any other exception is a bug or a bad event: dead-lettered at once rather than crashing the
  agent (Faust acks the event an agent crashed on, which would lose it).
- Acks are manual (`stream.noack()`): an event is acked after its effects or its dead letter are
  done. A worker stopped mid-retry leaves it unacked, so it is delivered again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import faust
from prometheus_client import Counter
from pydantic import ValidationError
from pymongo.errors import ConnectionFailure, ExecutionTimeout, WTimeoutError

from bridges.email import EmailUnavailable, Mailer, SmtpMailer
from infrastructure.mongo import MongoDatabase, create_mongo_client, mongo_database
from infrastructure.settings import Settings
from streams.events import Event
from streams.events import PoisonEvent as PoisonEvent  # re-exported: agents raise it
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

    @classmethod
    def from_settings(cls, settings: Settings) -> AgentDeps:
        client = create_mongo_client(settings)
        return cls(
            settings=settings,
            mongo=mongo_database(client, settings),
            mailer=SmtpMailer(settings),
            retry=RetryPolicy.from_settings(settings),
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


def decode_event(raw: bytes | None, *, stream: str) -> Event:
    """The envelope in `raw`, or `PoisonEvent` saying why there is none."""
    if raw is None:
        raise PoisonEvent("empty message (no value)")
    try:
        event = Event.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'message'}: {error['msg']}"
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


async def handle_message(
    raw: bytes | None, *, stream: str, handlers: Mapping[str, Handler]
) -> tuple[Event | None, str | None]:
    """Decode one message and run its type's handler (if any); returns the event (if any) and
    why to dead-letter it."""
    event: Event | None = None
    try:
        event = decode_event(raw, stream=stream)
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

    async def send(self, message: Any, *, agent: str, reason: str) -> None:
        """Park `message` with `reason`; keeps trying while Kafka is down (nothing else can run)."""
        headers = dead_letter_headers(
            message.headers,
            reason=reason,
            agent=agent,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            now=datetime.now(UTC),
        )
        log.error(
            "dead-lettering %s[%d]@%d: %s",
            message.topic,
            message.partition,
            message.offset,
            reason,
            extra={"agent": agent},
        )
        failures = 0
        while True:
            try:
                # force=True: publish now, not attached to the current event until its commit.
                pending = await self.topic.send(
                    key=message.key, value=message.value, headers=headers, force=True
                )
                await pending
                return
            except Exception as exc:
                failures += 1
                delay = self.policy.delay(failures)
                log.warning("dead letter not acked (%s), retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)


def subscribe(
    app: faust.App,
    deps: AgentDeps,
    *,
    stream: str,
    name: str,
    handlers: Mapping[str, Handler],
) -> None:
    """Run each event of `stream` whose type has a handler, in partition order, under the policy
    above; the stream's other types are acked untouched (their `event_type` header says which,
    so they are not even decoded)."""
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

    # One actor per worker (concurrency=1): a second would reorder events of one aggregate.
    async def consume(stream_: faust.StreamT[bytes]) -> None:
        # noack() is on the concrete Stream; the StreamT that Faust types agents with lacks it.
        manual = cast(faust.Stream[bytes], stream_).noack()
        async for item in manual.events():
            message = item.message
            announced = header_value(message.headers, "event_type")
            if announced is not None and announced not in wanted and announced in STREAMS[stream]:
                await manual.ack(item)
                continue
            event, reason = await handle_message(message.value, stream=stream, handlers=handlers)
            if reason is not None:
                await dead_letters.send(message, agent=name, reason=reason)
            AGENT_EVENTS.labels(
                agent=name, outcome="processed" if reason is None else "dead_lettered"
            ).inc()
            if event is not None and reason is None:
                log.debug("%s handled %s", name, event.event_id)
            await manual.ack(item)

    consume.__qualname__ = name  # how Faust labels the agent in its logs
    app.agent(topic, name=name, concurrency=1)(consume)
