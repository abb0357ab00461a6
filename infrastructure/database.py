"""PostgreSQL pool and the unit of work: services run inside it and never commit themselves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson

Connection = asyncpg.Connection  # re-exported so services type their argument without asyncpg


def _json_text(value: Any) -> str:
    # orjson: several times faster than json.dumps on the outbox payload every write carries.
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb columns come and go as Python objects, not strings.
    for type_name in ("jsonb", "json"):
        await conn.set_type_codec(
            type_name, encoder=_json_text, decoder=orjson.loads, schema="pg_catalog"
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """No reset query on release: see `create_pool`'s `reset_sessions`."""


async def create_pool(
    dsn: str, *, min_size: int = 2, max_size: int = 20, reset_sessions: bool = True
) -> asyncpg.Pool:
    """A pool whose connections speak jsonb as Python objects.

    By default asyncpg resets a connection's session on every release (advisory locks, LISTEN,
    cursors, SET): one more round trip per use, ~4% of an API write in a profile.
    `reset_sessions=False` skips it for code that keeps no session state on pooled connections,
    the API's request path; asyncpg still rolls back a transaction left open. Pools whose users
    take session advisory locks (search index builds, the relay) keep the reset.
    """
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        command_timeout=30,
        reset=None if reset_sessions else _keep_session,
    )
    assert pool is not None
    return pool


@asynccontextmanager
async def unit_of_work(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """One transaction: the entity rows and their outbox events commit together or not at all."""
    async with pool.acquire() as conn, conn.transaction():
        yield conn


def record_to_dict(record: asyncpg.Record | None) -> dict[str, Any] | None:
    return dict(record) if record is not None else None
