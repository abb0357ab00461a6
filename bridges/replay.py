"""`tulifo replay`: rebuild topics, tables and read models from the event store (the outbox).

The outbox keeps every event the write side ever committed, in commit order per aggregate, with
its sequence. A replay:
1. checks the target is empty: its stream topics hold nothing and its Faust app id (consumer
   group, changelog topics) is new; the target read models are emptied: the analytics tables of
   the target PostgreSQL database and the `client_data` collection of the target MongoDB
   database (`--in-place` is needed when either is the configured one, which then loses its read
   models until the rebuild ends);
2. publishes the whole outbox, oldest first, to the target topics, exactly as the relay does
   (the same packs of the same payloads), without touching the outbox's `published_at` marks;
3. runs a real Faust worker with only the read-model agents (REPLAY_AGENTS: no email, no outside
   effect) against the target, until its group has committed every partition to the end of the
   topics, then stops it.

The result is what the live pipeline built from the same events (tests/streams/test_replay.py
compares them). To serve from a rebuilt generation, point the worker and the relay at its topic
prefix and app id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import SecretStr

from bridges.kafka import ProducerFactory, ensure_topics
from bridges.relay import send_records
from infrastructure.migrations import migrate
from infrastructure.mongo import create_mongo_client, mongo_database
from infrastructure.processes import ManagedProcess
from infrastructure.settings import Settings
from streams.app import READ_MODEL_AGENTS
from streams.topics import stream_topic
from tables.client_data import CLIENT_DATA

log = logging.getLogger(__name__)

# The read models a replay rebuilds (migration 0004); views over them follow by themselves.
READ_MODEL_TABLES = (
    "analytics.escrow_balances",
    "analytics.escrow_movements",
    "analytics.user_ratings",
)
# The agents the replay worker runs: the PostgreSQL read models' and MongoDB `client_data`'s,
# which only folds into a table and upserts documents, so the whole history may go through it
# again. (dict.fromkeys: should READ_MODEL_AGENTS come to name it, it is still registered once.)
REPLAY_AGENTS = tuple(dict.fromkeys((*READ_MODEL_AGENTS, "client_data")))
# The streams those agents consume (gigs: escrow and client_data; reviews: ratings): the replay
# waits for these to be folded.
FOLDED_STREAMS = ("gigs", "reviews")
_CHUNK = 2_000


class ReplayRefused(Exception):
    """The target is not empty, or the replay would overwrite live read models unasked."""


@dataclass(frozen=True)
class ReplayReport:
    events: int
    seconds: float
    topic_prefix: str
    app_id: str
    mongo_database: str


async def replay(
    source: Settings,
    target: Settings,
    *,
    in_place: bool = False,
    deadline_s: float = 600.0,
    progress: Any = None,
) -> ReplayReport:
    """Rebuild `target`'s topics, tables and read models from `source`'s outbox."""
    started = time.monotonic()
    live = [
        store
        for store, same in (
            ("PostgreSQL", source.database_url == target.database_url),
            (
                "MongoDB",
                (source.mongo_url, source.mongo_database)
                == (target.mongo_url, target.mongo_database),
            ),
        )
        if same
    ]
    if live and not in_place:
        raise ReplayRefused(
            f"the target {' and '.join(live)} read models are the live ones: pass --in-place to "
            "empty and rebuild them"
        )
    if (source.topic_prefix, source.faust_app_id) == (target.topic_prefix, target.faust_app_id):
        raise ReplayRefused("the target needs a topic prefix and app id of its own")
    await ensure_topics(target)
    # (Tansu answers ListOffsets too low once a partition holds data, but never 0.)
    if any((await end_offsets(target, FOLDED_STREAMS)).values()):
        raise ReplayRefused(f"the topics under {target.topic_prefix!r} are not empty")
    await empty_read_models(target.database_url)
    await empty_client_data(target)
    events, ends = await publish_outbox(source.database_url, target)
    if progress:
        progress(f"published {events} events to {target.topic_prefix}.*")
    folded = {stream_topic(stream, target.topic_prefix) for stream in FOLDED_STREAMS}
    worker = _spawn_worker(target)
    try:
        await wait_folded(
            target,
            worker,
            ends={tp: end for tp, end in ends.items() if tp.topic in folded},
            deadline_s=deadline_s,
        )
    finally:
        _stop(worker)
    return ReplayReport(
        events,
        time.monotonic() - started,
        target.topic_prefix,
        target.faust_app_id,
        target.mongo_database,
    )


async def empty_read_models(database_url: str) -> None:
    await migrate(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f"TRUNCATE {', '.join(READ_MODEL_TABLES)}")
    finally:
        await conn.close()


async def empty_client_data(target: Settings) -> None:
    """Every document of the target's `client_data` goes. Deleted rather than dropped: the
    collection keeps whatever indexes it was given."""
    client = create_mongo_client(target)
    try:
        await mongo_database(client, target)[CLIENT_DATA].delete_many({})
    finally:
        client.close()


async def publish_outbox(
    database_url: str, target: Settings
) -> tuple[int, dict[TopicPartition, int]]:
    """Every outbox row, in id order, to the target's stream topics; returns how many, and the
    end offset each partition reached (from the acks: Tansu's ListOffsets answers wrong ones)."""
    producer = await ProducerFactory(
        target, client_id=f"{target.service_name}-replay", max_batch_size=262_144, linger_ms=5
    ).start()
    conn = await asyncpg.connect(database_url)
    sent = 0
    ends: dict[TopicPartition, int] = {}
    try:
        last_id = 0
        while True:
            rows = await conn.fetch(
                """SELECT id, event_id::text AS event_id, event_type, stream, sequence, key,
                          payload::text AS payload
                     FROM outbox WHERE id > $1 ORDER BY id LIMIT $2""",
                last_id,
                _CHUNK,
            )
            if not rows:
                return sent, ends
            for meta in await send_records(producer, rows, target):
                tp = TopicPartition(meta.topic, meta.partition)
                ends[tp] = max(ends.get(tp, 0), meta.offset + 1)
            sent += len(rows)
            last_id = rows[-1]["id"]
    finally:
        await conn.close()
        await producer.stop()


async def end_offsets(settings: Settings, streams: tuple[str, ...]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        partitions = [
            TopicPartition(stream_topic(stream, settings.topic_prefix), p)
            for stream in streams
            for p in range(settings.topic_partitions)
        ]
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        return ends
    finally:
        await consumer.stop()


async def committed_offsets(
    settings: Settings, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """What the worker's group has committed. A consumer of that group that never subscribes
    asks the coordinator without joining (a join would rebalance the worker)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.faust_app_id,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        return {tp: (await consumer.committed(tp)) or 0 for tp in partitions}
    finally:
        await consumer.stop()


async def wait_folded(
    target: Settings, worker: ManagedProcess, *, ends: dict[TopicPartition, int], deadline_s: float
) -> None:
    """Until the worker's group has committed every folded partition to its end.

    This covers every agent reading a partition, not only one of them: all the worker's agents
    are one consumer group (the app id), and Faust hands a message to each agent subscribed to its
    topic and counts it acked, committable, only once every one of them has acked it. An agent
    acks a batch after its sinks wrote it (agents/folding.py), so the `gigs` offsets reach the end
    only when both escrow_balances and client_data have written everything."""
    end = time.monotonic() + deadline_s
    while True:
        if not worker.alive:
            raise RuntimeError(f"the replay worker exited with {worker.popen.returncode}")
        try:
            committed = await committed_offsets(target, list(ends))
        except Exception as exc:  # the group's coordinator may not be known yet
            log.debug("no committed offsets yet: %s", exc)
            committed = {}
        if all(committed.get(tp, 0) >= offset for tp, offset in ends.items()):
            return
        if time.monotonic() > end:
            behind = {str(tp): (committed.get(tp, 0), off) for tp, off in ends.items()}
            raise TimeoutError(f"the replay worker did not catch up in {deadline_s:.0f}s: {behind}")
        await asyncio.sleep(0.5)


def worker_environment(target: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TULIFO_")}
    for name, value in target.model_dump().items():
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is None:
            text = ""  # how settings read "unset" from the environment
        elif isinstance(value, list | dict | tuple | set):
            text = json.dumps(list(value) if isinstance(value, set | tuple) else value)
        else:
            text = str(value)
        env[f"TULIFO_{name.upper()}"] = text
    env["TULIFO_WORKER_AGENTS"] = ",".join(REPLAY_AGENTS)
    return env


def _spawn_worker(target: Settings) -> ManagedProcess:
    # A child that dies with us: a replay stopped outright leaves no worker folding on.
    return ManagedProcess.spawn(
        "replay-worker",
        [sys.executable, "-m", "streams.worker"],
        env=worker_environment(target),
        echo=True,
    )


def _stop(worker: ManagedProcess) -> None:
    worker.stop(timeout=20.0)
