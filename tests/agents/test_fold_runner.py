"""The fold runner's batch steps without Kafka: what a store that refuses a value or is down does
to the table, and a batch folded while the previous one is still being written."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import faust
import pytest

from agents.folding import Fold, FoldRunner, Record, Taken, memory_store
from agents.runtime import AgentDeps, RetryPolicy
from infrastructure.settings import Settings
from streams.events import Event
from tables.sink import Buffered, Sink, SinkUnavailable
from tests.streams.gig_factories import numbered
from tests.streams.gig_factories import review as review_event


@dataclass
class Message:
    """What the runner reads of a Kafka message."""

    value: bytes
    partition: int = 0
    topic: str = "t.reviews"
    offset: int = 0
    key: bytes | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def pack(events: list[Event]) -> Message:
    return Message(json.dumps([e.model_dump(mode="json") for e in events]).encode())


class StoreStandIn(Sink):
    """A store that refuses some keys, or is down for a number of writes."""

    name = "stand_in"

    def __init__(self) -> None:
        super().__init__()
        self.refuse: set[str] = set()
        self.down_for = 0
        self.rows: dict[str, Any] = {}

    async def write(self, batch: Buffered) -> dict[str, str]:
        if self.down_for:
            self.down_for -= 1
            raise SinkUnavailable("connection refused")
        refused = {key: "constraint violated" for key in batch.values if key in self.refuse}
        self.rows |= {k: v for k, v in batch.values.items() if k not in refused}
        return refused


def count(state: dict[str, Any] | None, event: Event) -> dict[str, Any]:
    state = state or {}
    return {
        "count": state.get("count", 0) + 1,
        "stars": state.get("stars", 0) + event.data["rating"],
    }


@dataclass
class Harness:
    runner: FoldRunner
    store: StoreStandIn
    produced: list[Record]
    parked: list[tuple[Taken, str]]

    @property
    def table(self) -> Any:
        return memory_store(self.runner.table).data


@pytest.fixture
async def harness(settings: Settings) -> AsyncIterator[Harness]:
    store = StoreStandIn()
    fold = Fold(
        name="review_counts",
        stream="reviews",
        types=frozenset({"review.created"}),
        apply=count,
        sinks=(lambda deps: store,),
    )
    deps = AgentDeps(
        settings=settings,
        mongo=None,  # type: ignore[arg-type]
        mailer=None,  # type: ignore[arg-type]
        retry=RetryPolicy(attempts=3, first_delay_s=0.001, max_delay_s=0.001),
    )
    app = faust.App(f"fold-runner-{uuid.uuid4().hex[:8]}", store="memory://", autodiscover=False)
    runner = FoldRunner(app, deps, fold)
    produced: list[Record] = []
    parked: list[tuple[Taken, str]] = []

    async def produce(records: list[Record]) -> None:
        produced.extend(records)

    async def dead_letter(taken: list[Taken], reason: str) -> None:
        parked.extend((one, reason) for one in taken)

    runner._produce = produce  # type: ignore[method-assign]
    runner._dead_letter = dead_letter  # type: ignore[method-assign]
    yield Harness(runner, store, produced, parked)
    if runner._outbox is not None:  # opened by a gap fill
        await runner._outbox.close()


def reviews(user: uuid.UUID, *stars: int) -> list[Event]:
    return numbered(review_event(reviewee_id=user, rating=s) for s in stars)


async def test_a_batch_lands_in_the_store_the_table_and_the_changelog(harness: Harness) -> None:
    ann = uuid.uuid4()
    batch = await harness.runner.fold_batch([pack(reviews(ann, 5, 3))])
    assert await harness.runner.commit_batch(batch) == set()
    assert harness.table[str(ann)] == {"count": 2, "stars": 8, "seq": 2}
    assert harness.store.rows[str(ann)] == harness.table[str(ann)]
    [changelog] = harness.produced
    assert (json.loads(changelog.key), json.loads(changelog.value)) == (
        str(ann),
        harness.table[str(ann)],
    )


async def test_a_refused_value_keeps_the_tables_own_and_parks_its_events(
    harness: Harness,
) -> None:
    ann, bob = uuid.uuid4(), uuid.uuid4()
    bobs = reviews(bob, 4, 2)
    first = await harness.runner.fold_batch([pack(bobs[:1])])
    await harness.runner.commit_batch(first)
    harness.store.refuse = {str(bob)}

    # bob's second review travels in one pack with ann's first.
    batch = await harness.runner.fold_batch([pack(reviews(ann, 5) + bobs[1:])])
    assert await harness.runner.commit_batch(batch) == {str(bob)}

    assert harness.table[str(bob)] == {"count": 1, "stars": 4, "seq": 1}  # as it was
    assert harness.table[str(ann)] == {"count": 1, "stars": 5, "seq": 1}
    assert [(one.item["event_id"], reason) for one, reason in harness.parked] == [
        (str(bobs[1].event_id), "constraint violated")
    ]
    assert str(bob) not in {json.loads(r.key) for r in harness.produced[1:]}


async def test_a_store_that_is_down_holds_the_batch_until_it_is_back(harness: Harness) -> None:
    ann = uuid.uuid4()
    harness.store.down_for = 3
    batch = await harness.runner.fold_batch([pack(reviews(ann, 5))])
    assert harness.table.get(str(ann)) is None
    await harness.runner.commit_batch(batch)
    assert harness.store.down_for == 0
    assert harness.store.rows[str(ann)]["count"] == 1
    assert harness.table[str(ann)]["count"] == 1


async def test_the_next_batch_folds_on_the_one_being_written(harness: Harness) -> None:
    ann = uuid.uuid4()
    events = reviews(ann, 5, 4, 3)
    runner = harness.runner
    first = await runner.fold_next([pack(events[:2])], None)
    runner._ahead = first.working
    writing: asyncio.Future[set[str]] = asyncio.get_running_loop().create_future()

    async def committing() -> set[str]:
        refused = await runner.commit_batch(first)
        writing.set_result(refused)
        return refused

    second_fold = asyncio.ensure_future(runner.fold_next([pack(events[2:])], committing()))
    second = await second_fold
    assert writing.done()
    assert second.working[str(ann)] == {"count": 3, "stars": 12, "seq": 3}
    await runner.commit_batch(second)
    assert harness.store.rows[str(ann)] == {"count": 3, "stars": 12, "seq": 3}


async def test_a_batch_built_on_a_refused_value_is_folded_again(harness: Harness) -> None:
    ann = uuid.uuid4()
    runner = harness.runner
    events = reviews(ann, 5, 4, 3)
    committed = await runner.fold_batch([pack(events[:1])])
    await runner.commit_batch(committed)
    harness.store.refuse = {str(ann)}
    first = await runner.fold_batch([pack(events[1:2])])
    runner._ahead = first.working

    async def committing() -> set[str]:
        refused = await runner.commit_batch(first)
        harness.store.refuse = set()
        return refused

    second = await runner.fold_next([pack(events[2:])], committing())
    # The refused second review is not in the table, so the third one is a gap now, filled from
    # nowhere (no event store here): it is parked too, and the table keeps the first review only.
    assert str(ann) not in second.working
    assert harness.table[str(ann)] == {"count": 1, "stars": 5, "seq": 1}
    assert [one.item["sequence"] for one, _ in harness.parked] == [2, 3]
