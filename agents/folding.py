"""Stateful agents: fold one stream's events into a Faust table, materialize it, exactly once in
effect.

How a batch goes (DESIGN.md §4, §7):
1. `noack_take` hands over up to `fold_batch_max` events (waiting at most `fold_batch_seconds`);
   nothing is acked until step 5, so a crash or a stop anywhere before it redelivers the batch.
2. Each event of a type the fold takes is applied to a working copy of its aggregate's value,
   unless its `sequence` is at or below the `seq` the value already holds: that is a redelivery
   (a relay retry, a replay, the tail reprocessed after a crash) and changes nothing. The dedupe
   lives in the value itself, so it survives a crash together with the state it protects.
3. The sink writes the working value of every key the batch touched (duplicates included: after
   a crash the table may be ahead of the read model, and writing its value catches the read model
   up). A store that is down is back-pressure: the batch waits, unacked, and nothing new is taken.
4. The values go into the table's memory store and one changelog record per key per batch goes
   straight to the producer, to the key's source partition: the same record Faust would write,
   without its per-update overhead (one record per event through a 100-message buffer). Derived
   events (`rating.updated`) are produced here too. Faust flushes the producer before it commits.
5. The batch is acked; Faust commits the offsets later.

Why not `table[key] = value` per event: that is ~1.3-2k events/s on these machines; this is the
pattern DESIGN.md §7 measured at 3-5x that and keeps changelog recovery. Writing `table.data`
directly is only right with the memory store (the app's store, streams/app.py).

A poison event (undecodable, contradicting the aggregate's state) is dead-lettered with the reason
and skipped, its aggregate's `seq` not moved: republished later, it is applied then.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import faust
import orjson
from prometheus_client import Counter

from agents.runtime import AgentDeps, DeadLetters, decode_event, header_value
from streams.events import Event, PoisonEvent
from streams.topics import STREAMS, stream_of, stream_topic
from tables.sink import Sink, SinkUnavailable

log = logging.getLogger(__name__)

State = dict[str, Any]

FOLD_EVENTS = Counter(
    "tulifo_fold_events_total",
    "Events a stateful agent took: applied, duplicate (already applied), skipped (not its type) "
    "or dead_lettered",
    ["agent", "outcome"],
)


@dataclass(frozen=True)
class Fold:
    """What a stateful agent does, as pure parts; `register_fold` wires it to Faust."""

    name: str
    stream: str
    types: frozenset[str]
    # The value after one more event (a new dict; may raise PoisonEvent). `seq` is the runner's.
    apply: Callable[[State | None, Event], State]
    sink: Callable[[AgentDeps], Sink]
    # Events to publish for a key whose value changed in a batch (key, new value).
    derive: Callable[[str, State], Sequence[Event]] | None = None

    def __post_init__(self) -> None:
        missing = self.types - set(STREAMS[self.stream])
        if missing:
            raise ValueError(f"{sorted(missing)} do not travel on the {self.stream!r} stream")


@dataclass
class Batch:
    """What one batch did to the table, before any of it is made visible."""

    working: dict[str, State] = field(default_factory=dict)
    partition_of: dict[str, int] = field(default_factory=dict)
    messages_of: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))
    changed: set[str] = field(default_factory=set)
    outcomes: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class FoldRunner:
    """Runs one `Fold` over batches of one worker's partitions of its stream."""

    def __init__(self, app: faust.App, deps: AgentDeps, fold: Fold) -> None:
        self.app = app
        self.deps = deps
        self.fold = fold
        settings = deps.settings
        self.table = app.Table(
            fold.name,
            default=None,
            partitions=settings.topic_partitions,
            # No key/value types: Faust then (de)serializes both as JSON, which is what the
            # changelog records written below are.
            help=f"the {fold.name} fold, keyed by {fold.stream} aggregate",
        )
        self.topic = app.topic(
            stream_topic(fold.stream, settings.topic_prefix),
            key_serializer="raw",
            value_serializer="raw",
        )
        self.dead_letters = DeadLetters(app, settings, deps.retry)
        self._sink: Sink | None = None

    @property
    def sink(self) -> Sink:
        if self._sink is None:
            self._sink = self.fold.sink(self.deps)
        return self._sink

    # --- the pure-ish part: one batch into working values ---------------------------------

    async def fold_batch(self, messages: Sequence[Any]) -> Batch:
        """Apply `messages` to working copies of their aggregates' values (the table is not
        touched); poison is dead-lettered on the way."""
        batch = Batch()
        data = self.table.data
        types = self.fold.types
        for message in messages:
            announced = header_value(message.headers, "event_type")
            if announced is not None and announced not in types and announced in _KNOWN:
                batch.outcomes["skipped"] += 1
                continue
            try:
                event = decode_event(message.value, stream=self.fold.stream)
                if event.type not in types:
                    batch.outcomes["skipped"] += 1
                    continue
                if event.sequence is None:
                    raise PoisonEvent(f"{event.type} carries no aggregate sequence")
                key = event.aggregate_id
                state = batch.working[key] if key in batch.working else data.get(key)
                batch.partition_of[key] = message.partition
                batch.messages_of[key].append(message)
                if state is not None and event.sequence <= state["seq"]:
                    batch.outcomes["duplicate"] += 1
                else:
                    state = {**self.fold.apply(state, event), "seq": event.sequence}
                    batch.changed.add(key)
                    batch.outcomes["applied"] += 1
                batch.working[key] = state
                self.sink.add(
                    partition=message.partition,
                    key=key,
                    value=state,
                    occurred_at=event.occurred_at,
                )
            except PoisonEvent as exc:
                await self._dead_letter([message], str(exc))
                batch.outcomes["dead_lettered"] += 1
            except Exception as exc:
                log.exception("unexpected error folding an event; dead-lettering it")
                await self._dead_letter([message], f"unexpected {type(exc).__name__}: {exc}")
                batch.outcomes["dead_lettered"] += 1
        return batch

    # --- making it visible: read model, table + changelog, derived events -----------------

    async def commit_batch(self, batch: Batch) -> None:
        refused = await self._flush_sink()
        for key, reason in refused.items():
            # The store would not take this value: keep the table as it was for this key and
            # park its events, so a republish applies them again once the cause is fixed.
            await self._dead_letter(batch.messages_of[key], reason)
            batch.outcomes["dead_lettered"] += len(batch.messages_of[key])
            batch.working.pop(key, None)
            batch.changed.discard(key)
        data = self.table.data
        producer = self.app.producer
        changelog = self.table.changelog_topic.get_topic_name()
        for key, state in batch.working.items():
            data[key] = state
            await producer.send(
                changelog,
                orjson.dumps(key),
                orjson.dumps(state),
                batch.partition_of[key],
                None,
                None,
            )
        if self.fold.derive is not None:
            for key in batch.changed:
                for derived in self.fold.derive(key, batch.working[key]):
                    await producer.send(
                        stream_topic(stream_of(derived.type), self.deps.settings.topic_prefix),
                        derived.aggregate_id.encode(),
                        derived.model_dump_json().encode(),
                        None,
                        None,
                        [
                            ("event_id", str(derived.event_id).encode()),
                            ("event_type", derived.type.encode()),
                        ],
                    )
        for outcome, count in batch.outcomes.items():
            FOLD_EVENTS.labels(agent=self.fold.name, outcome=outcome).inc(count)

    async def _flush_sink(self) -> dict[str, str]:
        failures = 0
        while True:
            try:
                return await self.sink.flush()
            except SinkUnavailable as exc:
                failures += 1
                delay = self.deps.retry.delay(failures)
                log.warning(
                    "%s: read model unavailable (%s); holding the batch, retrying in %.1fs",
                    self.fold.name,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _dead_letter(self, messages: Sequence[Any], reason: str) -> None:
        for message in messages:
            await self.dead_letters.send(message, agent=self.fold.name, reason=reason)

    # --- the agent --------------------------------------------------------------------------

    def register(self) -> None:
        settings = self.deps.settings

        async def consume(stream_: faust.StreamT[bytes]) -> None:
            # noack_take is on the concrete Stream: events are acked below, after their effects.
            stream = cast(faust.Stream[bytes], stream_)
            async for events in stream.noack_take(
                settings.fold_batch_max, within=settings.fold_batch_seconds
            ):
                taken = cast(list[faust.EventT[bytes]], events)
                batch = await self.fold_batch([event.message for event in taken])
                await self.commit_batch(batch)
                for event in taken:
                    await stream.ack(event)

        consume.__qualname__ = self.fold.name
        # One actor (concurrency=1): a second would fold one aggregate's events out of order.
        self.app.agent(self.topic, name=self.fold.name, concurrency=1)(consume)


_KNOWN = frozenset(t for types in STREAMS.values() for t in types)


def register_fold(app: faust.App, deps: AgentDeps, fold: Fold) -> FoldRunner:
    runner = FoldRunner(app, deps, fold)
    runner.register()
    return runner
