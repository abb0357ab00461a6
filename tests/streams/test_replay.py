"""`tulifo replay`: the read models rebuilt from the outbox into empty stores equal the ones the
live pipeline built from the same events: the PostgreSQL tables row for row, the MongoDB
`client_data` documents field for field."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bridges.relay import OutboxRelay
from bridges.replay import ReplayRefused, replay
from infrastructure.mongo import MongoDatabase
from infrastructure.settings import Settings
from streams.events import Event
from tables import escrow
from tables.client_data import CLIENT_DATA, project_entry
from tests.conftest import wait_until
from tests.databases import fresh_database
from tests.streams.gig_factories import random_mix
from tests.streams.workers import (
    READ_MODEL_AGENTS,
    REPO,
    append_to_outbox,
    balances,
    event_store,
    new_app_id,
    pipeline_settings,
    ratings_rows,
    recompute,
    spawn_worker,
    worker_env,
)
from tests.tables.support import scratch_database

# The live worker runs client_data beside the PostgreSQL read models' agents, as the replay does.
LIVE_AGENTS = f"{READ_MODEL_AGENTS},client_data"

# Every column but materialized_at (when the row was written, which a rebuild changes).
READ_MODELS = {
    "analytics.escrow_balances": """booking_id, project_id, escrow_id, client_id, worker_id,
        currency, agreed_cents, status, funded_cents, held_cents, released_cents,
        worker_net_cents, fee_cents, refunded_cents, last_sequence, updated_at""",
    "analytics.escrow_movements": """event_id, booking_id, project_id, client_id, worker_id,
        kind, amount_cents, fee_cents, currency, occurred_at, day""",
    "analytics.user_ratings": """user_id, role, count, sum, stars_1, stars_2, stars_3, stars_4,
        stars_5, average, bayesian, last_sequence, updated_at""",
    "analytics.platform_daily": "*",
    "analytics.worker_earnings": "worker_id, currency, earned_cents, pending_cents, fees_cents",
    "analytics.client_spend": "client_id, currency, spent_cents, in_escrow_cents, refunded_cents",
}


async def snapshot(database_url: str) -> dict[str, list[tuple[object, ...]]]:
    conn = await asyncpg.connect(database_url)
    try:
        return {
            table: sorted(
                tuple(row.values()) for row in await conn.fetch(f"SELECT {columns} FROM {table}")
            )
            for table, columns in READ_MODELS.items()
        }
    finally:
        await conn.close()


async def documents(db: MongoDatabase) -> dict[str, dict[str, Any]]:
    """Every client_data document, by id."""
    return {doc["_id"]: doc async for doc in db[CLIENT_DATA].find({})}


def without_write_time(docs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The documents but their top-level `updatedAt`: when the sink last wrote them, which a
    rebuild changes (each project's own `updatedAt` comes from its events, and stays)."""
    return {key: {k: v for k, v in doc.items() if k != "updatedAt"} for key, doc in docs.items()}


def client_projects(events: list[Event]) -> dict[str, dict[str, Any]]:
    """client id -> project id -> the client_data entry that folding `events` once each, in
    order, gives. An entry's lastSequence is its gig's last event the fold applies: the sink
    writes a gig's value when one of those is folded, not for the gig's other events."""
    gigs: dict[str, Any] = {}
    for event in events:
        if event.type in escrow.TYPES:
            state = escrow.apply(gigs.get(event.aggregate_id), event)
            gigs[event.aggregate_id] = {**state, "seq": event.sequence}
    projects: dict[str, dict[str, Any]] = defaultdict(dict)
    for project_id, state in gigs.items():
        entry = project_entry(project_id, state)
        if entry is not None:
            projects[entry["clientId"]][project_id] = entry
    return dict(projects)


async def test_a_replay_into_empty_stores_rebuilds_what_the_live_pipeline_built(
    kafka: str, mongo_url: str, tmp_path: Path
) -> None:
    events = random_mix(random.Random(7), gigs=400)
    async with (
        fresh_database("tulifo_live") as live_db,
        fresh_database("tulifo_rebuilt") as rebuilt_db,
        scratch_database(mongo_url) as live_mongo,
        scratch_database(mongo_url) as rebuilt_mongo,
    ):
        settings = pipeline_settings(
            database_url=live_db,
            kafka=kafka,
            mongo_url=mongo_url,
            prefix="l",
            mongo_database=live_mongo.name,
        )
        await append_to_outbox(live_db, events)
        history = await event_store(live_db)
        expected, expected_clients = recompute(history), client_projects(history)
        worker = spawn_worker(settings, tmp_path, agents=LIVE_AGENTS)
        relay = OutboxRelay(settings)
        relaying = asyncio.create_task(relay.run())
        try:

            async def live_caught_up() -> bool:
                if (await balances(live_db), await ratings_rows(live_db)) != expected:
                    return False
                docs = await documents(live_mongo)
                return {key: doc["projects"] for key, doc in docs.items()} == expected_clients

            await wait_until(live_caught_up, timeout=120, interval=0.3, what="the live pipeline")
        finally:
            await relay.stop()
            await relaying
            worker.process.stop()
        live = await snapshot(live_db)
        assert len(live["analytics.escrow_balances"]) == 400
        live_docs = await documents(live_mongo)
        assert sum(len(doc["projects"]) for doc in live_docs.values()) == 400
        # Left over from an earlier rebuild: the replay starts from an empty collection.
        await rebuilt_mongo[CLIENT_DATA].insert_one(
            {"_id": "stale", "clientId": "stale", "projects": {}}
        )

        # The command a user runs, as a user runs it.
        command = [
            sys.executable,
            "-m",
            "infrastructure.cli",
            "replay",
            "--database-url",
            rebuilt_db,
            "--mongo-database",
            rebuilt_mongo.name,
            "--topic-prefix",
            f"r{uuid.uuid4().hex[:8]}",
            "--app-id",
            new_app_id(),
            "--timeout",
            "180",
        ]
        done = await asyncio.to_thread(
            subprocess.run,
            command,
            env=worker_env(settings, TULIFO_FAUST_DATA_DIR=str(tmp_path / "replay")),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert f"replayed {len(events)} events" in done.stdout

        assert await snapshot(rebuilt_db) == live
        # Read as soon as the command is done: it returns only once client_data has written all.
        assert without_write_time(await documents(rebuilt_mongo)) == without_write_time(live_docs)
        # The live documents are untouched, down to when they were written.
        assert await documents(live_mongo) == live_docs


async def test_a_replay_over_the_live_read_models_must_be_asked_for(
    settings: Settings,
) -> None:
    target = settings.model_copy(update={"topic_prefix": "elsewhere", "faust_app_id": "other"})
    with pytest.raises(ReplayRefused, match=r"PostgreSQL and MongoDB .* --in-place"):
        await replay(settings, target)
    # Another PostgreSQL database is not enough: client_data would be rebuilt over the live one.
    elsewhere = target.model_copy(update={"database_url": "postgresql://nowhere/rebuilt"})
    with pytest.raises(ReplayRefused, match=r"target MongoDB read models .* --in-place"):
        await replay(settings, elsewhere)
    with pytest.raises(ReplayRefused, match="prefix and app id of its own"):
        await replay(settings, settings, in_place=True)
