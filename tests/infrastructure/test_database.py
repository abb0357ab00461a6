"""The API's pool (no reset query, no task per release) hands every connection back, whatever
happens to the caller that held it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from infrastructure.database import create_pool, unit_of_work
from tests.databases import fresh_database

DEADLINE_S = 10.0


@pytest.fixture
async def pool() -> AsyncIterator[asyncpg.Pool]:
    async with fresh_database() as url:
        # One connection: any connection not handed back would stop the next acquire.
        created = await create_pool(url, min_size=1, max_size=1, reset_sessions=False)
        try:
            yield created
        finally:
            try:
                # close() waits for every connection to come back: one that never does is
                # this test failing, not a hung run.
                async with asyncio.timeout(DEADLINE_S):
                    await created.close()
            except TimeoutError:
                created.terminate()
                raise


async def _still_usable(pool: asyncpg.Pool) -> None:
    async with asyncio.timeout(DEADLINE_S), pool.acquire() as conn:
        assert await conn.fetchval("SELECT 1") == 1
        assert not conn.is_in_transaction()


async def test_released_connections_go_back_to_the_pool(pool: asyncpg.Pool) -> None:
    for _ in range(50):
        async with unit_of_work(pool) as conn:
            await conn.execute("SELECT 1")
    assert pool.get_idle_size() == 1
    await _still_usable(pool)


async def test_a_transaction_left_open_is_rolled_back_on_release(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute("CREATE TEMP TABLE marks (n int)")
        await conn.execute("BEGIN")
        await conn.execute("INSERT INTO marks VALUES (1)")

    async with asyncio.timeout(DEADLINE_S), pool.acquire() as conn:
        assert not conn.is_in_transaction()
        assert await conn.fetchval("SELECT count(*) FROM marks") == 0


@pytest.mark.parametrize("steps", range(8))
async def test_a_holder_cancelled_at_any_step_does_not_keep_the_connection(
    pool: asyncpg.Pool, steps: int
) -> None:
    holding = asyncio.Event()

    async def hold() -> None:
        async with pool.acquire() as conn:
            # A transaction left open makes the release wait on the server (its ROLLBACK).
            await conn.execute("BEGIN")
            holding.set()
            await conn.execute("SELECT pg_sleep(0)")

    task = asyncio.create_task(hold())
    async with asyncio.timeout(DEADLINE_S):
        await holding.wait()
    # Let the holder run `steps` more turns of the loop, then cancel it wherever it is: in its
    # query, in the release, or already done.
    for _ in range(steps):
        await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    await _still_usable(pool)
