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


class _UnshieldedPool(asyncpg.Pool):  # type: ignore[misc]  # asyncpg ships no types
    """asyncpg's pool, releasing a connection without `asyncio.shield`.

    `Pool.release` runs the holder's release in a task of its own, so that a caller cancelled
    meanwhile still hands its connection back. The task costs ~20 µs a release, two per API
    request. With no reset query (`_keep_session`) a release does not wait on the server, so
    nothing can cancel it midway; if it ever does wait (a transaction left open is rolled back)
    and is cancelled there, the holder's own error path closes the connection and the pool opens
    a new one: a reconnect, never a lost connection."""

    async def release(self, connection: Any, *, timeout: float | None = None) -> None:
        holder = getattr(connection, "_holder", None)
        con = getattr(connection, "_con", None)
        if holder is None or con is None or getattr(holder, "_pool", None) is not self:
            # Foreign, released or unexpected: asyncpg's own path checks and says what is wrong.
            await super().release(connection, timeout=timeout)
            return
        self._check_init()
        con._on_release()
        await holder.release(holder._timeout if timeout is None else timeout)


async def create_pool(
    dsn: str, *, min_size: int = 2, max_size: int = 20, reset_sessions: bool = True
) -> asyncpg.Pool:
    """A pool whose connections speak jsonb as Python objects.

    By default asyncpg resets a connection's session on every release (advisory locks, LISTEN,
    cursors, SET): one more round trip per use, ~4% of an API write in a profile.
    `reset_sessions=False` skips it for code that keeps no session state on pooled connections,
    the API's request path; asyncpg still rolls back a transaction left open. Such a pool also
    releases without a task per release (`_UnshieldedPool`). Pools whose users take session
    advisory locks (search index builds, the relay) keep the reset.
    """
    if reset_sessions:
        pool = await asyncpg.create_pool(
            dsn, min_size=min_size, max_size=max_size, init=_init_connection, command_timeout=30
        )
        assert pool is not None
        return pool
    # What asyncpg.create_pool builds, with its defaults, as the subclass.
    unshielded = _UnshieldedPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        init=_init_connection,
        reset=_keep_session,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        command_timeout=30,
    )
    await unshielded
    return unshielded


@asynccontextmanager
async def unit_of_work(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """One transaction: the entity rows and their outbox events commit together or not at all."""
    async with pool.acquire() as conn, conn.transaction():
        yield conn


def record_to_dict(record: asyncpg.Record | None) -> dict[str, Any] | None:
    return dict(record) if record is not None else None
