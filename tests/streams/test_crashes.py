"""Kill it and see: a stream of more than 10,000 gig and review events flows from the outbox
through the relay to two real Faust workers, and a process is SIGKILLed in the middle. Once the
pipeline has caught up, every read model must equal a recomputation from the event store (the
outbox): nothing lost, nothing applied twice."""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from bridges.relay import OutboxRelay
from infrastructure.embedded import start_tansu
from infrastructure.processes import ManagedProcess, free_port
from infrastructure.settings import Settings
from streams.events import Event
from tests.conftest import wait_until
from tests.databases import fresh_database
from tests.streams.gig_factories import random_mix
from tests.streams.workers import (
    READ_MODEL_AGENTS,
    REPO,
    Worker,
    append_to_outbox,
    balances,
    consumer_lag,
    event_store,
    pipeline_settings,
    ratings_rows,
    recompute,
    spawn_worker,
    worker_env,
)

# ~3.2 events per gig on average: 3,300 gigs make a little over 10,000 events.
GIGS = 3_300
# A survivor takes a dead member's partitions after the session timeout (10 s) and a rebalance.
CATCH_UP_S = 150.0


@dataclass
class Stream:
    settings: Settings
    directory: Path
    events: list[Event]
    workers: list[Worker] = field(default_factory=list)
    appended: int = 0

    async def append(self, upto: int) -> None:
        """Commit events [appended, upto) to the outbox, as the write side would."""
        await append_to_outbox(self.settings.database_url, self.events[self.appended : upto])
        self.appended = max(self.appended, upto)

    async def materialized(self) -> int:
        conn = await asyncpg.connect(self.settings.database_url)
        try:
            count: int = await conn.fetchval("SELECT count(*) FROM analytics.escrow_movements")
            return count
        finally:
            await conn.close()

    async def caught_up(self) -> bool:
        for worker in self.workers:
            if not worker.process.alive and worker is not self.workers[0]:
                raise AssertionError(f"a surviving worker died:\n{worker.log()}")
        expected = recompute(await event_store(self.settings.database_url))
        got = (
            await balances(self.settings.database_url),
            await ratings_rows(self.settings.database_url),
        )
        return got == expected

    async def difference(self) -> str:
        """What is off, for the failure message."""
        expected_balances, expected_ratings = recompute(
            await event_store(self.settings.database_url)
        )
        got_balances = await balances(self.settings.database_url)
        got_ratings = await ratings_rows(self.settings.database_url)
        lines = []
        for what, expected, got in (
            ("balances", expected_balances, got_balances),
            ("ratings", expected_ratings, got_ratings),
        ):
            missing = expected.keys() - got.keys()
            extra = got.keys() - expected.keys()
            wrong = [k for k in expected.keys() & got.keys() if expected[k] != got[k]]
            lines.append(
                f"{what}: {len(expected)} expected, {len(got)} materialized, {len(missing)} "
                f"missing, {len(extra)} unexpected, {len(wrong)} different"
                + "".join(f"\n  {k}: expected {expected[k]}, got {got[k]}" for k in wrong[:5])
            )
        counts = [dict(await w.fold_counts()) for w in self.workers]
        conn = await asyncpg.connect(self.settings.database_url)
        try:
            unpublished = await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL"
            )
            # For each wrong rating: the sequence its row says it reflects against the reviews
            # the event store has (a row at the last sequence with too few reviews was folded
            # wrong; one behind was never written), and what the workers logged of that user.
            wrong_ratings = [
                k
                for k in expected_ratings.keys() & got_ratings.keys()
                if expected_ratings[k] != got_ratings[k]
            ]
            for key in wrong_ratings[:5]:
                row = await conn.fetchrow(
                    "SELECT last_sequence, count FROM analytics.user_ratings WHERE user_id = $1",
                    key,
                )
                store = await conn.fetchrow(
                    "SELECT max(sequence) AS last, count(*) AS n FROM outbox"
                    " WHERE stream = 'reviews' AND key = $1",
                    key,
                )
                mentions = [
                    f"{w.process.name}: {line}"
                    for w in self.workers
                    for line in w.log(1_000_000).splitlines()
                    if key in line
                ]
                lines.append(
                    f"  {key}: row at sequence {row['last_sequence']} with {row['count']} reviews;"
                    f" the event store has {store['n']} up to sequence {store['last']}"
                    + "".join(f"\n    {m[:300]}" for m in mentions[:5])
                )
        finally:
            await conn.close()
        # Whether the events stopped before Kafka (the relay), before the workers (unconsumed),
        # or in them.
        lag = await consumer_lag(self.settings, ["gigs", "reviews"])
        return (
            "\n".join(lines)
            + f"\noutbox rows unpublished: {unpublished}\nfold counts: {counts}\n"
            + f"the group's offsets:\n{lag}"
        )

    def logs(self) -> str:
        return "\n".join(
            f"--- {w.process.name}: group and partition changes, warnings and errors\n"
            f"{w.notable()}\n--- {w.process.name}: last lines\n{w.log(3000)}"
            for w in self.workers
        )


@pytest.fixture
async def stream(kafka: str, mongo_url: str, tmp_path: Path) -> AsyncIterator[Stream]:
    events = random_mix(random.Random(6), gigs=GIGS)
    assert len(events) >= 10_000
    async with fresh_database("tulifo_crash") as database_url:
        settings = pipeline_settings(
            database_url=database_url, kafka=kafka, mongo_url=mongo_url, prefix="k"
        )
        run = Stream(settings, tmp_path, events)
        try:
            yield run
        finally:
            for worker in run.workers:
                worker.process.kill()


async def wait_for_the_truth(run: Stream, relay: OutboxRelay | None = None) -> None:
    try:
        await wait_until(run.caught_up, timeout=CATCH_UP_S, interval=0.5, what="the read models")
    except AssertionError as exc:
        in_process = (
            ""
            if relay is None
            else f"\nrelay: leader {relay.is_leader}, published {relay.published}, "
            f"failures {relay.failures}"
        )
        raise AssertionError(f"{exc}\n{await run.difference()}{in_process}\n{run.logs()}") from None


async def test_a_worker_killed_mid_stream_loses_nothing_and_applies_nothing_twice(
    stream: Stream,
) -> None:
    relay = OutboxRelay(stream.settings)
    relaying = asyncio.create_task(relay.run())
    try:
        stream.workers = [
            spawn_worker(stream.settings, stream.directory, f"w{i}", agents=READ_MODEL_AGENTS)
            for i in (1, 2)
        ]
        victim = stream.workers[0]

        async def both_working() -> bool:
            counts = [await w.fold_counts() for w in stream.workers]
            if all(c[("escrow_balances", "applied")] > 0 for c in counts):
                return True
            # One worker folds a backlog in well under a second, perhaps before the other has
            # joined: keep events coming until both have partitions and fold them.
            await stream.append(min(stream.appended + 100, len(stream.events) // 4))
            return False

        await wait_until(both_working, timeout=90, interval=0.2, what="both workers to fold")
        await stream.append(len(stream.events) // 2)
        await wait_until(lambda: stream.materialized(), timeout=60, what="a first materialization")
        victim.process.kill()  # SIGKILL: no commit, no flush, no goodbye to the group
        await stream.append(len(stream.events))

        await wait_for_the_truth(stream, relay)
    finally:
        await relay.stop()
        await relaying


async def test_a_relay_killed_mid_stream_loses_nothing_and_applies_nothing_twice(
    stream: Stream,
) -> None:
    stream.workers = [
        spawn_worker(stream.settings, stream.directory, "w1", agents=READ_MODEL_AGENTS)
    ]
    relays = [spawn_relay(stream.settings, stream.directory, "relay1")]
    try:
        await stream.append(len(stream.events) // 2)
        await wait_until(lambda: stream.materialized(), timeout=90, what="a first materialization")
        relays[0].kill()  # in the middle of a batch, perhaps: published but not yet marked
        relays.append(spawn_relay(stream.settings, stream.directory, "relay2"))
        await stream.append(len(stream.events))

        await wait_for_the_truth(stream)
    finally:
        for relay in relays:
            relay.stop()


def spawn_relay(settings: Settings, directory: Path, name: str) -> ManagedProcess:
    env = worker_env(settings, TULIFO_RELAY_POLL_SECONDS="0.1")
    return ManagedProcess.spawn(
        name,
        [sys.executable, "-m", "bridges.relay"],
        env=env,
        cwd=REPO,
        log_path=directory / f"{name}.log",
    )


async def test_a_broker_restarted_empty_is_refilled_from_the_outbox_and_nothing_doubles(
    mongo_url: str, tmp_path: Path
) -> None:
    """An in-memory broker that dies takes every topic, changelog and committed offset with it.
    As `tulifo dev` does, the relay and the worker are started again with it; the relay finds
    no mark of the outbox on the new broker and publishes all of it again, and the new worker
    folds the whole history again over read models that already hold most of it."""
    port = free_port()
    broker, bootstrap = start_tansu(port)
    events = random_mix(random.Random(8), gigs=GIGS)
    try:
        async with fresh_database("tulifo_broker") as database_url:
            settings = pipeline_settings(
                database_url=database_url, kafka=bootstrap, mongo_url=mongo_url, prefix="b"
            )
            run = Stream(settings, tmp_path, events)
            relays = [spawn_relay(settings, tmp_path, "relay1")]
            try:
                run.workers = [spawn_worker(settings, tmp_path, "w1", agents=READ_MODEL_AGENTS)]
                await run.append(len(events) // 2)
                await wait_until(run.materialized, timeout=90, what="a first materialization")

                broker.kill()
                relays[0].kill()
                run.workers[0].process.kill()
                await run.append(3 * len(events) // 4)  # written while Kafka is gone
                broker, _ = await asyncio.to_thread(start_tansu, port)
                relays.append(spawn_relay(settings, tmp_path, "relay2"))
                run.workers.append(spawn_worker(settings, tmp_path, "w2", agents=READ_MODEL_AGENTS))
                await run.append(len(events))

                await wait_for_the_truth(run)
            finally:
                for relay in relays:
                    relay.stop()
                for worker in run.workers:
                    worker.process.kill()
    finally:
        broker.kill()
