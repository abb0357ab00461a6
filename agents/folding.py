"""Stateful agents: fold one stream's events into a Faust table, materialize it, exactly once in
effect.

How a batch goes (DESIGN.md §4, §7):
1. `noack_take` hands over up to `fold_batch_max` messages (waiting at most
   `fold_batch_seconds`), each a pack of events (streams/packing.py); nothing is acked until
   step 5, so a crash or a stop anywhere before it redelivers the batch.
2. Each event moves its aggregate's `seq` (the last sequence folded, kept in the value itself):
   one at or below it is a redelivery (a relay retry, a replay, the tail reprocessed after a
   crash) and changes nothing; the next one is applied (or, for a type the fold does not take,
   only counted, its envelope not validated); one further ahead means earlier events are
   missing here (a table recovered short of its changelog's end: Tansu answers
   ListOffsets low, so Faust can stop reading a changelog early; a broker that lost them; a
   trimmed topic), and they are read from the outbox, the event store, and folded first. The
   dedupe lives in the value, so it survives a crash together with the state it protects.
3. The sinks write the working value of every key the batch touched (duplicates included: after
   a crash the table may be ahead of the read model, and writing its value catches the read model
   up). A store that is down is back-pressure: the batch waits, unacked, and nothing further is
   taken once the next batch is folded.
4. The values go into the table's memory store and one changelog record per key per batch goes
   straight to the producer, to the key's source partition: the same record Faust would write,
   without its per-update overhead (one record per event through a 100-message buffer). Derived
   events (`rating.updated`) are produced here too, and the batch waits for the broker's acks.
5. The batch is acked; Faust commits the offsets later.

Steps 3-5 of one batch run while the next batch is taken and folded (step 2), reading the values
the first one is committing; batches are committed one at a time, in order, so acks stay in
offset order. Should a store refuse a value the next batch built on, that batch is folded again
from what the table holds (its poison dead-lettered a second time, which a dead letter allows).

Recovery (`FoldTable`) keeps the value with the highest `seq` per key, whatever order the
changelog holds them in.

Why not `table[key] = value` per event: that is ~1.3-3k events/s on these machines. Batches with
one changelog record per key (DESIGN.md §7's "net direct") took a worker to ~4-5k, still paying
Faust's per-message delivery for every event; with packs (streams/packing.py) and the overlap
above, the same worker folds ~7-20k events/s into PostgreSQL (bench/README.md), and the read
models' writes are what it waits on. Changelog recovery is kept. Writing `table.data` directly is
only right with the memory store (the app's store, streams/app.py).

A poison event (undecodable, contradicting the aggregate's state) is dead-lettered with the reason
and skipped, its aggregate's `seq` not moved: republished later, it is applied then.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import asyncpg
import faust
import orjson
from faust.stores.memory import Store as MemoryStore
from prometheus_client import Counter

from agents.runtime import AgentDeps, DeadLetters, holding, validate_event
from streams.events import Event, PoisonEvent
from streams.packing import is_pack, unpack
from streams.topics import STREAMS, stream_of, stream_topic
from tables.sink import PG_UNAVAILABLE, Buffered, Sink, SinkUnavailable

log = logging.getLogger(__name__)

State = dict[str, Any]
T = TypeVar("T")

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
    # Where the values are materialized; each is written before the batch is acked.
    sinks: tuple[Callable[[AgentDeps], Sink], ...]
    # Events to publish for a key whose value changed in a batch (key, new value).
    derive: Callable[[str, State], Sequence[Event]] | None = None

    def __post_init__(self) -> None:
        missing = self.types - set(STREAMS[self.stream])
        if missing:
            raise ValueError(f"{sorted(missing)} do not travel on the {self.stream!r} stream")


class FoldTable(faust.Table):  # type: ignore[misc,type-arg]
    """A Faust table whose changelog recovery keeps, per key, the value of the highest `seq`.

    Faust applies changelog records in log order, the last one winning. A worker may still write
    a record or two for a partition it has just lost (a batch fetched before a rebalance and
    handed over after it), and such a record, older than what the new owner wrote before it, would
    then win: a crash-and-recover of that owner would fold from an older value while its offsets
    say the events in between were done, and lose them. Every fold value carries the sequence it
    reflects, and a value with a higher one includes everything an older one does, so the newest
    wins whatever order the log holds them in.
    """

    def apply_changelog_batch(self, batch: Iterable[faust.EventT[Any]]) -> None:
        store = memory_store(self)
        values = store.data
        for event in batch:
            key = self._to_key(event.key)
            store._key_partition[key] = event.message.partition
            if event.message.value is None:
                values.pop(key, None)
                continue
            value = event.value
            current = values.get(key)
            if current is None or _seq(value) >= _seq(current):
                values[key] = value


def memory_store(table: faust.Table[Any, Any]) -> MemoryStore[Any, Any]:
    """The table's memory store (the app's store is `memory://`, streams/app.py)."""
    return cast(MemoryStore[Any, Any], table.data)


def _seq(value: Any) -> int:
    return int(value.get("seq", 0)) if isinstance(value, dict) else 0


@dataclass(frozen=True)
class Record:
    """One record to produce: a changelog value or a derived event."""

    topic: str
    key: bytes
    value: bytes
    partition: int | None
    headers: list[tuple[str, bytes]] | None = None


@dataclass(frozen=True)
class Taken:
    """One event as it came: its Kafka message, and its place and envelope in the message's pack
    (no index: the message holds this event alone, or is no event at all)."""

    message: Any
    index: int | None = None
    item: Any = None


@dataclass
class Batch:
    """What one batch did to the table, before any of it is made visible."""

    working: dict[str, State] = field(default_factory=dict)
    partition_of: dict[str, int] = field(default_factory=dict)
    taken_of: dict[str, list[Taken]] = field(default_factory=lambda: defaultdict(list))
    changed: set[str] = field(default_factory=set)
    outcomes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # Each sink's buffer of this batch, detached when the fold ended.
    buffered: list[tuple[Sink, Buffered]] = field(default_factory=list)


class FoldRunner:
    """Runs one `Fold` over batches of one worker's partitions of its stream."""

    def __init__(self, app: faust.App, deps: AgentDeps, fold: Fold) -> None:
        self.app = app
        self.deps = deps
        self.fold = fold
        settings = deps.settings
        self.table = cast(
            FoldTable,
            app.tables.add(
                FoldTable(
                    app,
                    name=fold.name,
                    beacon=app.beacon,
                    default=None,
                    partitions=settings.topic_partitions,
                    # No key/value types: Faust then (de)serializes both as JSON, which is what the
                    # changelog records written below are.
                    help=f"the {fold.name} fold, keyed by {fold.stream} aggregate",
                )
            ),
        )
        self.topic = app.topic(
            stream_topic(fold.stream, settings.topic_prefix),
            key_serializer="raw",
            value_serializer="raw",
        )
        self.dead_letters = DeadLetters(app, settings, deps.retry)
        self._sinks: list[Sink] | None = None
        self._outbox: asyncpg.Pool | None = None
        self._data: MutableMapping[Any, Any] = {}  # the table's values, looked up per batch
        # The working values of the batch being committed, until the table has them.
        self._ahead: dict[str, State] = {}
        self._stream_types = frozenset(STREAMS[fold.stream])

    @property
    def sinks(self) -> list[Sink]:
        if self._sinks is None:
            self._sinks = [make(self.deps) for make in self.fold.sinks]
        return self._sinks

    # --- the pure-ish part: one batch into working values ---------------------------------

    async def fold_batch(self, messages: Sequence[Any]) -> Batch:
        """Apply the events `messages` carry to working copies of their aggregates' values (the
        table is not touched); poison is dead-lettered on the way."""
        batch = Batch()
        self._data = memory_store(self.table).data
        for message in messages:
            try:
                envelopes = unpack(message.value)
            except PoisonEvent as exc:
                await self._dead_letter([Taken(message)], str(exc))
                batch.outcomes["dead_lettered"] += 1
                continue
            packed = is_pack(message.value)
            for index, item in enumerate(envelopes):
                taken = Taken(message, index if packed else None, item)
                try:
                    await self._fold_one(batch, taken)
                except PoisonEvent as exc:
                    await self._dead_letter([taken], str(exc))
                    batch.outcomes["dead_lettered"] += 1
                except Exception as exc:
                    log.exception("unexpected error folding an event; dead-lettering it")
                    await self._dead_letter([taken], f"unexpected {type(exc).__name__}: {exc}")
                    batch.outcomes["dead_lettered"] += 1
        batch.buffered = [(sink, sink.detach()) for sink in self.sinks]
        return batch

    async def _fold_one(self, batch: Batch, taken: Taken) -> None:
        item, types = taken.item, self.fold.types
        event: Event | None = None
        event_type = item.get("type") if isinstance(item, dict) else None
        if event_type in self._stream_types and event_type not in types:
            # Not a type this fold applies: only its place in its aggregate's order matters,
            # read without validating the rest of the envelope.
            key, sequence = item.get("aggregate_id"), item.get("sequence")
            if not isinstance(key, str) or not isinstance(sequence, int) or sequence < 1:
                raise PoisonEvent(f"{event_type} without an aggregate_id and a sequence")
        else:
            event = validate_event(item, stream=self.fold.stream)
            if event.sequence is None:
                raise PoisonEvent(f"{event.type} carries no aggregate sequence")
            key, sequence = event.aggregate_id, event.sequence
        state: State | None
        if key in batch.working:
            state = batch.working[key]
        elif key in self._ahead:
            state = self._ahead[key]  # the batch being committed: not in the table yet
        else:
            state = self._data.get(key)
        last = int(state["seq"]) if state is not None else 0
        if sequence > last + 1:
            # Earlier events of this aggregate are missing here: a table recovered short of its
            # changelog's end, a broker that lost them, a trimmed topic. Folding this one now
            # would skip them; the event store has them, in order.
            state = await self._fill_gap(batch, key, state, last, sequence)
            last = sequence - 1
        message = taken.message
        batch.partition_of[key] = message.partition
        if sequence <= last:
            batch.outcomes["duplicate"] += 1
        elif event is not None:
            state = {**self.fold.apply(state, event), "seq": sequence}
            batch.changed.add(key)
            batch.outcomes["applied"] += 1
        else:
            state = {**(state or {}), "seq": sequence}
            batch.outcomes["skipped"] += 1
        assert state is not None
        batch.working[key] = state
        if event is not None:
            batch.taken_of[key].append(taken)
            for sink in self.sinks:
                sink.add(
                    partition=message.partition,
                    key=key,
                    value=state,
                    occurred_at=event.occurred_at,
                    event_id=str(event.event_id),
                )

    async def _fill_gap(
        self, batch: Batch, key: str, state: State | None, last: int, sequence: int
    ) -> State | None:
        """Fold the aggregate's events last+1 .. sequence-1 from the outbox (the event store)."""
        missing = await self._holding_the_batch(
            lambda: self._from_event_store(key, after=last, before=sequence),
            retry_on=PG_UNAVAILABLE,
            what="the event store",
        )
        if [e.sequence for e in missing] != list(range(last + 1, sequence)):
            raise PoisonEvent(
                f"sequence gap on {key}: event {sequence} after {last}, and the event store "
                f"has {len(missing)} of the {sequence - last - 1} in between"
            )
        log.warning(
            "%s: %s had folded up to %d when %d came; %d events taken from the event store",
            self.fold.name,
            key,
            last,
            sequence,
            len(missing),
        )
        batch.outcomes["filled"] += len(missing)
        for event in missing:
            if event.type in self.fold.types:
                state = {**self.fold.apply(state, event), "seq": event.sequence}
                batch.changed.add(key)
            else:
                state = {**(state or {}), "seq": event.sequence}
        return state

    async def _from_event_store(self, key: str, *, after: int, before: int) -> list[Event]:
        if self._outbox is None:
            self._outbox = await asyncpg.create_pool(
                self.deps.settings.database_url, min_size=1, max_size=1, command_timeout=30
            )
        rows = await self._outbox.fetch(
            """SELECT payload::text AS payload FROM outbox
                WHERE stream = $1 AND key = $2 AND sequence > $3 AND sequence < $4
                ORDER BY sequence""",
            self.fold.stream,
            key,
            after,
            before,
        )
        return [Event.model_validate_json(row["payload"]) for row in rows]

    # --- making it visible: read model, table + changelog, derived events -----------------

    async def commit_batch(self, batch: Batch) -> set[str]:
        """Make `batch` visible: read models, then table and changelog, then derived events;
        returns the keys a store refused (their values were left out, their events parked)."""
        refused: dict[str, str] = {}
        for sink, buffered in batch.buffered:
            refused |= await self._flush_sink(sink, buffered)
        for key, reason in refused.items():
            # The store would not take this value: keep the table as it was for this key and
            # park its events, so a republish applies them again once the cause is fixed.
            await self._dead_letter(batch.taken_of[key], reason)
            batch.outcomes["dead_lettered"] += len(batch.taken_of[key])
            batch.working.pop(key, None)
            batch.changed.discard(key)
        store = memory_store(self.table)
        changelog = self.table.changelog_topic.get_topic_name()
        records: list[Record] = []
        for key, state in batch.working.items():
            store[key] = state
            # What Faust's memory store notes when it recovers a key, so that a later rebalance
            # drops this key from memory if its partition goes to another worker.
            store._key_partition[key] = batch.partition_of[key]
            records.append(
                Record(changelog, orjson.dumps(key), orjson.dumps(state), batch.partition_of[key])
            )
        if self.fold.derive is not None:
            prefix = self.deps.settings.topic_prefix
            for key in batch.changed:
                for derived in self.fold.derive(key, batch.working[key]):
                    headers = [
                        ("event_id", str(derived.event_id).encode()),
                        ("event_type", derived.type.encode()),
                    ]
                    if derived.sequence is not None:
                        headers.append(("sequence", str(derived.sequence).encode()))
                    records.append(
                        Record(
                            stream_topic(stream_of(derived.type), prefix),
                            derived.aggregate_id.encode(),
                            derived.model_dump_json().encode(),
                            None,
                            headers,
                        )
                    )
        await self._produce(records)
        for outcome, count in batch.outcomes.items():
            FOLD_EVENTS.labels(agent=self.fold.name, outcome=outcome).inc(count)
        return set(refused)

    async def _produce(self, records: list[Record]) -> None:
        """Send `records` and wait until the broker has them all, before the batch is acked: a
        record the producer gave up on would otherwise be lost without a word. Resending is
        safe: recovery keeps the highest `seq` per key, and derived events keep their ids."""

        async def send_all() -> None:
            async with asyncio.timeout(self.deps.settings.kafka_ack_timeout_seconds):
                pending = [
                    await self.app.producer.send(
                        r.topic, r.key, r.value, r.partition, None, r.headers
                    )
                    for r in records
                ]
                await asyncio.gather(*pending)

        await self._holding_the_batch(send_all, retry_on=(Exception,), what="Kafka's acks")

    async def _flush_sink(self, sink: Sink, buffered: Buffered) -> dict[str, str]:
        return await self._holding_the_batch(
            lambda: sink.flush(buffered),
            retry_on=(SinkUnavailable,),
            what=f"the {sink.name} read model",
        )

    async def _holding_the_batch(
        self,
        step: Callable[[], Awaitable[T]],
        *,
        retry_on: tuple[type[BaseException], ...],
        what: str,
    ) -> T:
        """Run `step` until it succeeds; meanwhile the batch stays unacked and no later batch is
        committed."""
        return await holding(
            step, retry_on=retry_on, policy=self.deps.retry, what=f"{self.fold.name}: {what}"
        )

    async def _dead_letter(self, taken: Sequence[Taken], reason: str) -> None:
        for one in taken:
            await self.dead_letters.send(
                one.message, agent=self.fold.name, reason=reason, item=one.item, index=one.index
            )

    # --- the agent --------------------------------------------------------------------------

    async def fold_next(
        self, messages: Sequence[Any], committing: Awaitable[set[str]] | None
    ) -> Batch:
        """Fold `messages` while the previous batch (`committing`) is still being written (its
        values are read from `_ahead`): Python folds while PostgreSQL and Kafka work. Returns
        once that commit is done too."""
        batch = await self.fold_batch(messages)
        if committing is not None:
            refused = await committing
            if refused & batch.working.keys():
                # This batch built on a value the store refused (and the table kept out): fold
                # it again from what the table holds now.
                self._ahead = {}
                batch = await self.fold_batch(messages)
        return batch

    async def _commit_and_ack(
        self, stream: faust.Stream[bytes], batch: Batch, taken: list[faust.EventT[bytes]]
    ) -> set[str]:
        refused = await self.commit_batch(batch)
        if self._ahead is batch.working:
            # The table has them now (or kept its own value for a refused key), and a value held
            # here past its commit could outlive a rebalance that moved its partition away.
            self._ahead = {}
        for event in taken:
            await stream.ack(event)
        return refused

    def register(self) -> None:
        settings = self.deps.settings

        async def consume(stream_: faust.StreamT[bytes]) -> None:
            # noack_take is on the concrete Stream: events are acked after their batch's effects.
            stream = cast(faust.Stream[bytes], stream_)
            committing: asyncio.Task[set[str]] | None = None
            try:
                async for events in stream.noack_take(
                    settings.fold_batch_max, within=settings.fold_batch_seconds
                ):
                    taken = cast(list[faust.EventT[bytes]], events)
                    batch = await self.fold_next([event.message for event in taken], committing)
                    # One commit at a time, in batch order: the acks stay in offset order.
                    self._ahead = batch.working
                    committing = asyncio.ensure_future(self._commit_and_ack(stream, batch, taken))
            except asyncio.CancelledError:
                if committing is not None:
                    committing.cancel()  # unacked: delivered again, and every write is idempotent
                raise
            if committing is not None:
                await committing

        consume.__qualname__ = self.fold.name
        # One actor (concurrency=1): a second would fold one aggregate's events out of order.
        self.app.agent(self.topic, name=self.fold.name, concurrency=1)(consume)


def register_fold(app: faust.App, deps: AgentDeps, fold: Fold) -> FoldRunner:
    runner = FoldRunner(app, deps, fold)
    runner.register()
    return runner
