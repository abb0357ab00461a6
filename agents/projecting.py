"""Projections: agents that read several streams in batches and, for each batch, bring an outside
view (a search index, the match rankings) up to date with the entities its events name.

Unlike a fold (agents/folding.py), a projection keeps no state of its own that events build up:
an event only says which entity changed, and the projection reads that entity as it is now from
the write side (tables/documents.py). That makes it order-free and idempotent by construction —
a redelivered, replayed or out-of-order event reads the same current document — which is why a
projection may read `users`, `ratings` and `gigs` together in one agent.

How a batch goes: up to `fold_batch_max` messages (packs of events, streams/packing.py) are taken
without acking; each envelope of a type the projection wants is validated (poison is
dead-lettered alone, with the reason); the projection's `apply` gets the batch's events in order
and returns the ones whose effect the store refused (dead-lettered with that reason); a store or
database that is down makes the batch wait and try again (back-pressure, nothing acked); then the
batch is acked.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

import faust
from prometheus_client import Counter

from agents.runtime import AgentDeps, DeadLetters, holding, validate_event
from streams.events import Event, PoisonEvent
from streams.packing import is_pack, unpack
from streams.topics import STREAMS, stream_topic

log = logging.getLogger(__name__)
T = TypeVar("T")

PROJECTED_EVENTS = Counter(
    "tulifo_projection_events_total",
    "Events a projection took: applied, skipped (not its type) or dead_lettered",
    ["agent", "outcome"],
)


class Projector(Protocol):
    async def start(self) -> None:
        """Connect and prepare (create indices, load state) before the first batch."""

    async def apply(self, events: Sequence[Event]) -> Mapping[str, str]:
        """Bring the view up to date with the entities `events` name; returns {event_id:
        reason} for the events whose effect the store refused."""


class Unavailable(Exception):
    """A store or database a projection writes or reads is down: hold the batch, retry."""


@dataclass(frozen=True)
class Projection:
    name: str
    # stream -> the event types of it the projection reads
    types: Mapping[str, frozenset[str]]
    # Made once per worker when the agent starts (nothing connects at import or registration),
    # and started before the first batch is taken.
    make: Callable[[AgentDeps], Projector]
    # Exceptions (besides `Unavailable`) that mean "down, try again", e.g. asyncpg's.
    transient: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        for stream, types in self.types.items():
            missing = types - set(STREAMS[stream])
            if missing:
                raise ValueError(f"{sorted(missing)} do not travel on the {stream!r} stream")


@dataclass(frozen=True)
class _Taken:
    message: Any
    index: int | None
    item: Any


class ProjectionRunner:
    def __init__(self, app: faust.App, deps: AgentDeps, projection: Projection) -> None:
        self.app = app
        self.deps = deps
        self.projection = projection
        prefix = deps.settings.topic_prefix
        self.stream_of_topic = {stream_topic(stream, prefix): stream for stream in projection.types}
        self.topic = app.topic(*self.stream_of_topic, key_serializer="raw", value_serializer="raw")
        self.dead_letters = DeadLetters(app, deps.settings, deps.retry)
        self._projector: Projector | None = None
        self._started = False

    async def run_batch(self, messages: Sequence[Any]) -> None:
        """Project the events `messages` carry; returns once they are applied or dead-lettered."""
        name = self.projection.name
        events: list[Event] = []
        taken_of: dict[str, _Taken] = {}
        for message in messages:
            stream = self.stream_of_topic[message.topic]
            wanted = self.projection.types[stream]
            try:
                envelopes = unpack(message.value)
            except PoisonEvent as exc:
                await self._dead_letter(_Taken(message, None, None), str(exc))
                continue
            packed = is_pack(message.value)
            for index, item in enumerate(envelopes):
                announced = item.get("type") if isinstance(item, dict) else None
                if announced in STREAMS[stream] and announced not in wanted:
                    PROJECTED_EVENTS.labels(agent=name, outcome="skipped").inc()
                    continue
                taken = _Taken(message, index if packed else None, item)
                try:
                    event = validate_event(item, stream=stream)
                except PoisonEvent as exc:
                    await self._dead_letter(taken, str(exc))
                    continue
                events.append(event)
                taken_of[str(event.event_id)] = taken
        if not events:
            return
        refused = await self._apply_holding(events)
        for event_id, reason in refused.items():
            await self._dead_letter(taken_of[event_id], reason)
        PROJECTED_EVENTS.labels(agent=name, outcome="applied").inc(len(events) - len(refused))

    async def start(self) -> Projector:
        """The projector, started (retrying while what it needs is down)."""
        return await self._holding(self._started_projector)

    async def _started_projector(self) -> Projector:
        if self._projector is None:
            self._projector = self.projection.make(self.deps)
        if not self._started:
            await self._projector.start()
            self._started = True
        return self._projector

    async def _apply_holding(self, events: Sequence[Event]) -> Mapping[str, str]:
        async def apply() -> Mapping[str, str]:
            projector = await self._started_projector()
            return await projector.apply(events)

        return await self._holding(apply)

    async def _holding(self, step: Callable[[], Awaitable[T]]) -> T:
        return await holding(
            step,
            retry_on=(Unavailable, *self.projection.transient),
            policy=self.deps.retry,
            what=self.projection.name,
        )

    async def _dead_letter(self, taken: _Taken, reason: str) -> None:
        PROJECTED_EVENTS.labels(agent=self.projection.name, outcome="dead_lettered").inc()
        await self.dead_letters.send(
            taken.message,
            agent=self.projection.name,
            reason=reason,
            item=taken.item,
            index=taken.index,
        )

    def register(self) -> None:
        settings = self.deps.settings

        async def consume(stream_: faust.StreamT[bytes]) -> None:
            stream = cast(faust.Stream[bytes], stream_)
            await self.start()
            async for events in stream.noack_take(
                settings.fold_batch_max, within=settings.fold_batch_seconds
            ):
                taken = cast(list[faust.EventT[bytes]], events)
                await self.run_batch([event.message for event in taken])
                for event in taken:
                    await stream.ack(event)

        consume.__qualname__ = self.projection.name
        # One actor: batches are applied one after the other (a projection reads current state,
        # so order between batches does not matter for correctness, but one at a time keeps the
        # store's load and the acks simple).
        self.app.agent(self.topic, name=self.projection.name, concurrency=1)(consume)


def register_projection(
    app: faust.App, deps: AgentDeps, projection: Projection
) -> ProjectionRunner:
    runner = ProjectionRunner(app, deps, projection)
    runner.register()
    return runner
