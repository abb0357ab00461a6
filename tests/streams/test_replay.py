"""`tulifo replay`: the read models rebuilt from the outbox into empty stores equal the ones the
live pipeline built from the same events, row for row."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from bridges.relay import OutboxRelay
from bridges.replay import ReplayRefused, replay
from infrastructure.settings import Settings
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


async def test_a_replay_into_empty_stores_rebuilds_what_the_live_pipeline_built(
    kafka: str, mongo_url: str, tmp_path: Path
) -> None:
    events = random_mix(random.Random(7), gigs=400)
    async with (
        fresh_database("tulifo_live") as live_db,
        fresh_database("tulifo_rebuilt") as rebuilt_db,
    ):
        settings = pipeline_settings(
            database_url=live_db, kafka=kafka, mongo_url=mongo_url, prefix="l"
        )
        await append_to_outbox(live_db, events)
        worker = spawn_worker(settings, tmp_path, agents=READ_MODEL_AGENTS)
        relay = OutboxRelay(settings)
        relaying = asyncio.create_task(relay.run())
        try:

            async def live_caught_up() -> bool:
                expected = recompute(await event_store(live_db))
                return (await balances(live_db), await ratings_rows(live_db)) == expected

            await wait_until(live_caught_up, timeout=120, interval=0.3, what="the live pipeline")
        finally:
            await relay.stop()
            await relaying
            worker.process.stop()
        live = await snapshot(live_db)
        assert len(live["analytics.escrow_balances"]) == 400

        # The command a user runs, as a user runs it.
        command = [
            sys.executable,
            "-m",
            "infrastructure.cli",
            "replay",
            "--database-url",
            rebuilt_db,
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


async def test_a_replay_over_the_live_read_models_must_be_asked_for(
    settings: Settings,
) -> None:
    target = settings.model_copy(update={"topic_prefix": "elsewhere", "faust_app_id": "other"})
    with pytest.raises(ReplayRefused, match="--in-place"):
        await replay(settings, target)
    with pytest.raises(ReplayRefused, match="prefix and app id of its own"):
        await replay(settings, settings, in_place=True)
