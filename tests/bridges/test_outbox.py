"""The outbox's one-statement append: an entity change and its event commit together, or neither
happens, and the aggregate's sequence never skips a number."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from bridges.outbox import append_event, append_event_with
from infrastructure.database import create_pool
from streams.events import Event, new_event
from streams.users import ProfileUpdated

RENAME = "UPDATE things SET name = $2 WHERE id = $1 RETURNING id, name"


def _event(user_id: uuid.UUID) -> Event:
    data = ProfileUpdated(user_id=user_id, role="worker", changed=["bio"], profile={"bio": "b"})
    return new_event(data, aggregate_id=user_id, actor_id=user_id)


async def _sequences(conn: asyncpg.Connection, user_id: uuid.UUID) -> list[int]:
    rows = await conn.fetch(
        "SELECT sequence FROM outbox WHERE key = $1 ORDER BY sequence", str(user_id)
    )
    return [row["sequence"] for row in rows]


@pytest.fixture
async def conn(outbox_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the API's kind of pool, with a table `things` of rows 1 ("old") and 2."""
    pool = await create_pool(outbox_url, min_size=1, max_size=1, reset_sessions=False)
    try:
        async with pool.acquire() as held:
            await held.execute("CREATE TEMP TABLE things (id int PRIMARY KEY, name text)")
            await held.execute("INSERT INTO things VALUES (1, 'old'), (2, 'other')")
            yield held
    finally:
        await pool.close()


async def test_a_change_and_its_event_land_in_one_statement_and_a_miss_leaves_no_gap(
    conn: asyncpg.Connection,
) -> None:
    user_id = uuid.uuid4()
    await append_event(conn, _event(user_id))

    changed = await append_event_with(conn, _event(user_id), RENAME, 1, "new")
    missed = await append_event_with(conn, _event(user_id), RENAME, 3, "nobody")
    await append_event(conn, _event(user_id))

    assert changed is not None
    assert (changed["id"], changed["name"]) == (1, "new")
    assert missed is None
    # The miss took no number: 1, 2 (with the change), 3, with nothing between.
    assert await _sequences(conn, user_id) == [1, 2, 3]
    payloads = await conn.fetch(
        "SELECT payload FROM outbox WHERE key = $1 ORDER BY sequence", str(user_id)
    )
    assert [p["payload"]["sequence"] for p in payloads] == [1, 2, 3]


async def test_a_change_that_fails_records_no_event(conn: asyncpg.Connection) -> None:
    user_id = uuid.uuid4()
    clash = "UPDATE things SET id = 2 WHERE id = $1 RETURNING id"

    with pytest.raises(asyncpg.UniqueViolationError):
        await append_event_with(conn, _event(user_id), clash, 1)

    assert await _sequences(conn, user_id) == []
    assert await conn.fetchval("SELECT name FROM things WHERE id = 1") == "old"
