"""Materializers: where a table's values land for readers outside the stream (analysts' SQL, the
API, dashboards), behind one small base.

A sink buffers the latest value of every key a batch touched, per source partition, and writes
them in one go when the agent flushes it, which it does before it acks the batch (so before the
offsets can be committed). Every write is an idempotent upsert keyed by the aggregate and guarded
by its sequence, so writing a value twice, or an older one after a newer, changes nothing: replays,
redeliveries and a crash between the write and the commit are all safe.

A dependency that is down is back-pressure, not loss: `flush` raises `SinkUnavailable`, the agent
keeps the batch unacked, takes nothing new, and tries again after a pause. A value the store
refuses (a constraint, a bad type) is poison for its key only: the other keys are written and the
refused one is reported back so its events can be dead-lettered with the reason.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

import asyncpg
from prometheus_client import Counter, Histogram

log = logging.getLogger(__name__)

MATERIALIZATION_LAG = Histogram(
    "tulifo_materialization_lag_seconds",
    "From an event's commit on the write side to its effect committed in a read model",
    ["sink"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
SINK_WRITES = Counter(
    "tulifo_sink_values_written_total", "Values a sink wrote (upserts, idempotent)", ["sink"]
)
SINK_FAILURES = Counter("tulifo_sink_failures_total", "Sink writes that failed", ["sink", "kind"])


class SinkUnavailable(Exception):
    """The store cannot be written now; retry the whole flush later."""


class Sink(ABC):
    """Buffer per partition, last value per key wins; `flush` writes and clears the buffer."""

    name: ClassVar[str]

    def __init__(self) -> None:
        self._buffer: dict[int, dict[str, Any]] = defaultdict(dict)
        self._oldest: dict[str, datetime] = {}
        # The events behind each buffered value: a sink that writes one row per event writes
        # those, not every event the value has ever folded.
        self.events: dict[str, set[str]] = defaultdict(set)

    def add(
        self, *, partition: int, key: str, value: Any, occurred_at: datetime, event_id: str
    ) -> None:
        self._buffer[partition][key] = value
        self.events[key].add(event_id)
        seen = self._oldest.get(key)
        if seen is None or occurred_at < seen:
            self._oldest[key] = occurred_at

    def __len__(self) -> int:
        return sum(len(values) for values in self._buffer.values())

    async def flush(self) -> dict[str, str]:
        """Write every buffered value; returns {key: reason} for values the store refused.
        Raises SinkUnavailable (buffer kept) when the store is down."""
        values = {key: value for part in self._buffer.values() for key, value in part.items()}
        if not values:
            return {}
        refused = await self.write(values)
        now = datetime.now().astimezone()
        lag = MATERIALIZATION_LAG.labels(sink=self.name)
        for key, occurred_at in self._oldest.items():
            if key not in refused:
                lag.observe(max(0.0, (now - occurred_at).total_seconds()))
        SINK_WRITES.labels(sink=self.name).inc(len(values) - len(refused))
        self._buffer.clear()
        self._oldest.clear()
        self.events.clear()
        return refused

    @abstractmethod
    async def write(self, values: Mapping[str, Any]) -> dict[str, str]:
        """Upsert `values` (key -> table value); returns {key: reason} for those refused."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the sink holds."""


# Errors that say "PostgreSQL is not reachable or not answering", not "this row is wrong".
PG_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)


class PostgresSink(Sink):
    """A sink into PostgreSQL: one transaction per flush; on a refused value, one per key to find
    which (the rest still land)."""

    def __init__(self, database_url: str) -> None:
        super().__init__()
        self.database_url = database_url
        self._pool: asyncpg.Pool | None = None

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            try:
                self._pool = await asyncpg.create_pool(
                    self.database_url, min_size=1, max_size=2, command_timeout=30
                )
            except PG_UNAVAILABLE as exc:
                raise SinkUnavailable(f"{type(exc).__name__}: {exc}") from exc
        assert self._pool is not None
        return self._pool

    @abstractmethod
    async def write_values(self, conn: asyncpg.Connection, items: list[tuple[str, Any]]) -> None:
        """Upsert `items` (key, value) on `conn`, inside the transaction the base opened."""

    async def write(self, values: Mapping[str, Any]) -> dict[str, str]:
        pool = await self.pool()
        try:
            try:
                async with pool.acquire() as conn, conn.transaction():
                    await self.write_values(conn, list(values.items()))
                return {}
            except asyncpg.PostgresError as exc:
                if isinstance(exc, PG_UNAVAILABLE):
                    raise
                SINK_FAILURES.labels(sink=self.name, kind="refused").inc()
                log.error("%s refused a batch (%s); writing it key by key", self.name, exc)
            refused: dict[str, str] = {}
            for key, value in values.items():
                try:
                    async with pool.acquire() as conn, conn.transaction():
                        await self.write_values(conn, [(key, value)])
                except asyncpg.PostgresError as exc:
                    if isinstance(exc, PG_UNAVAILABLE):
                        raise
                    refused[key] = f"{self.name}: {type(exc).__name__}: {exc}"
            return refused
        except PG_UNAVAILABLE as exc:
            SINK_FAILURES.labels(sink=self.name, kind="unavailable").inc()
            raise SinkUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
