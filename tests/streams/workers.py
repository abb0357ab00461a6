"""Real Faust workers for tests: `python -m streams.worker` as a child process configured only by
`TULIFO_*`, its Prometheus page scraped for what its agents did, and the read models it writes
compared with a recomputation from the event store."""

from __future__ import annotations

import os
import re
import sys
import uuid
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from bridges.outbox import append_events
from infrastructure.database import create_pool
from infrastructure.processes import ManagedProcess, free_port
from infrastructure.settings import Settings
from streams.events import Event
from streams.topics import stream_topic
from tables import escrow, ratings

REPO = Path(__file__).resolve().parents[2]
# Consumer group and partition changes, recovery, and anything at WARNING or above.
_NOTABLE = re.compile(
    r"rebalanc|assign|revok|generation|Recovery complete|Worker ready|WARNING|ERROR|CRITICAL"
    r"|Traceback|Exception",
    re.IGNORECASE,
)

_PASSED_ON = (
    "env",
    "database_url",
    # The agents publish live updates there (agents/live.py, agents/messages.py): the test's
    # Redis database, never the machine's default one.
    "redis_url",
    "kafka_bootstrap",
    "mongo_url",
    "mongo_database",
    "smtp_host",
    "smtp_port",
    "topic_prefix",
    "topic_partitions",
    "faust_app_id",
    "log_json",
    "elasticsearch_url",
    "search_index_prefix",
    "match_top_k",
)


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    values = settings.model_dump()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TULIFO_")}
    env.update(
        {
            f"TULIFO_{name.upper()}": "" if values[name] is None else str(values[name])
            for name in _PASSED_ON
        }
    )
    env.update(extra)
    return env


def spawn_worker(
    settings: Settings, directory: Path, name: str = "worker", *, agents: str = ""
) -> Worker:
    """A worker with a data directory, log file and metrics port of its own; `agents` as in
    TULIFO_WORKER_AGENTS (all when empty)."""
    port = free_port()
    env = worker_env(
        settings,
        TULIFO_FAUST_DATA_DIR=str(directory / name),
        TULIFO_FAUST_WEB_PORT=str(port),
        TULIFO_WORKER_AGENTS=agents,
    )
    process = ManagedProcess.spawn(
        name,
        [sys.executable, "-m", "streams.worker"],
        env=env,
        cwd=REPO,
        log_path=directory / f"{name}.log",
    )
    return Worker(process, port)


class Worker:
    def __init__(self, process: ManagedProcess, metrics_port: int) -> None:
        self.process = process
        self.metrics_port = metrics_port

    def log(self, tail: int = 6000) -> str:
        assert self.process.log_path is not None
        return self.process.log_path.read_text(errors="replace")[-tail:]

    def notable(self, limit: int = 60) -> str:
        """The log's lines about the consumer group, partitions and recovery, and its errors,
        without the per-event warnings: where a stalled worker stopped and why."""
        assert self.process.log_path is not None
        text = self.process.log_path.read_text(errors="replace")
        lines = [
            line
            for line in text.splitlines()
            if _NOTABLE.search(line) and "agents.folding" not in line
        ]
        return "\n".join(lines[-limit:])

    async def fold_counts(self) -> dict[tuple[str, str], float]:
        """(agent, outcome) -> events, from the worker's /metrics; empty while it is not up."""
        try:
            async with httpx.AsyncClient(timeout=2) as http:
                response = await http.get(f"http://127.0.0.1:{self.metrics_port}/metrics")
        except httpx.HTTPError:
            return defaultdict(float)
        counts: dict[tuple[str, str], float] = defaultdict(float)
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                if sample.name == "tulifo_fold_events_total":
                    counts[(sample.labels["agent"], sample.labels["outcome"])] += sample.value
        return counts


async def append_to_outbox(database_url: str, events: list[Event], *, chunk: int = 400) -> None:
    """Commit `events` to the outbox in transactions of `chunk`, with the write side's statement
    (each gets its aggregate's next sequence)."""
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            for start in range(0, len(events), chunk):
                async with conn.transaction():
                    await append_events(conn, events[start : start + chunk])
    finally:
        await pool.close()


# --- what the read models should hold, recomputed from the event store ------------------------


async def event_store(database_url: str) -> list[Event]:
    """Every event of the outbox, in outbox order (per aggregate, sequence order)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT payload::text AS payload FROM outbox ORDER BY id")
    finally:
        await conn.close()
    return [Event.model_validate_json(row["payload"]) for row in rows]


def recompute(events: list[Event]) -> tuple[dict[str, tuple[Any, ...]], dict[str, tuple[Any, ...]]]:
    """The escrow balances (by booking) and ratings (by user) that folding `events` once each, in
    order, gives, as read-model rows (the columns `balances` and `ratings_rows` select)."""
    gigs: dict[str, Any] = {}
    rated: dict[str, Any] = {}
    for event in events:
        if event.type in escrow.TYPES:
            state = escrow.apply(gigs.get(event.aggregate_id), event)
            gigs[event.aggregate_id] = {**state, "seq": event.sequence}
        elif event.type in ratings.TYPES:
            state = ratings.apply(rated.get(event.aggregate_id), event)
            rated[event.aggregate_id] = {**state, "seq": event.sequence}
    balances = {
        booking_id: _balance_tuple(balance)
        for gig in gigs.values()
        for booking_id, balance in gig["bookings"].items()
    }
    rating_rows = {
        user: (
            state["role"],
            state["count"],
            state["sum"],
            *state["stars"],
            ratings.average(state),
            ratings.bayesian(state),
        )
        for user, state in rated.items()
    }
    return balances, rating_rows


def _balance_tuple(balance: dict[str, Any]) -> tuple[Any, ...]:
    return (
        balance["status"],
        balance["currency"],
        balance["funded_cents"],
        balance["held_cents"],
        balance["released_cents"],
        balance["worker_net_cents"],
        balance["fee_cents"],
        balance["refunded_cents"],
    )


async def balances(database_url: str) -> dict[str, tuple[Any, ...]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            """SELECT booking_id, status, currency, funded_cents, held_cents, released_cents,
                      worker_net_cents, fee_cents, refunded_cents
                 FROM analytics.escrow_balances"""
        )
    finally:
        await conn.close()
    return {str(row["booking_id"]): tuple(row.values())[1:] for row in rows}


async def ratings_rows(database_url: str) -> dict[str, tuple[Any, ...]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            """SELECT user_id, role, count, sum, stars_1, stars_2, stars_3, stars_4, stars_5,
                      average, bayesian
                 FROM analytics.user_ratings"""
        )
    finally:
        await conn.close()
    return {str(row["user_id"]): tuple(row.values())[1:] for row in rows}


# What the crash and replay tests compare: the PostgreSQL read models' agents.
READ_MODEL_AGENTS = "escrow,ratings"


def new_app_id() -> str:
    return f"tulifo-test-{uuid.uuid4().hex[:8]}"


def pipeline_settings(
    *, database_url: str, kafka: str, mongo_url: str, prefix: str, **extra: Any
) -> Settings:
    """A pipeline of a test's own: its database, topics (`<prefix><random>.*`) and app id."""
    values: dict[str, Any] = {
        "env": "test",
        "database_url": database_url,
        "kafka_bootstrap": kafka,
        "mongo_url": mongo_url,
        "rabbitmq_url": None,
        "topic_prefix": f"{prefix}{uuid.uuid4().hex[:8]}",
        "faust_app_id": new_app_id(),
        "log_json": False,
        "relay_poll_seconds": 0.1,
    }
    return Settings(**{**values, **extra})


async def consumer_lag(settings: Settings, streams: Sequence[str]) -> str:
    """Per partition of `streams`' topics: the worker group's committed offset against the end
    of the log. Lag left when a test times out means events were never consumed (or never
    committed); none means they were consumed and folded wrongly."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.faust_app_id,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        lines = []
        for stream in streams:
            topic = stream_topic(stream, settings.topic_prefix)
            tps = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                committed = await consumer.committed(tp)
                lines.append(f"{tp.topic}[{tp.partition}]: committed {committed}, end {ends[tp]}")
        return "\n".join(lines)
    finally:
        await consumer.stop()
