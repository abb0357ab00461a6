"""Materializers: where a table's values land for readers outside the stream (analysts' SQL, the
API, dashboards), behind one small base.

A sink buffers the latest value of every key a batch touched, per source partition, and writes
them in one go when the agent flushes it, which it does before it acks the batch (so before the
offsets can be committed). The agent detaches a batch's buffer before writing it, so the next
batch can be folded into a new one meanwhile (agents/folding.py). Every write is an idempotent
upsert keyed by the aggregate and guarded by its sequence, so writing a value twice, or an older one
after a newer, changes nothing: replays, redeliveries and a crash between the write and the commit
are all safe.

A dependency that is down is back-pressure, not loss: `flush` raises `SinkUnavailable`, the agent
keeps the batch unacked, commits nothing after it, and tries again after a pause. A value the store
refuses (a constraint, a bad type) is poison for its key only: the other keys are written and the
refused one is reported back so its events can be dead-lettered with the reason.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import defaultdict
from dataclasses import dataclass, field
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


@dataclass
class Buffered:
    """What one batch gave a sink: the latest value per key, the events behind each (a sink that
    writes one row per event writes those, not every event the value has ever folded), and the
    oldest event's time per key (for the lag). Detached from the sink by `Sink.detach`, so the
    next batch fills a new one while this one is written."""

    values: dict[str, Any] = field(default_factory=dict)
    events: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    oldest: dict[str, datetime] = field(default_factory=dict)


class Sink(ABC):
    """Buffer per partition, last value per key wins; `flush` writes a batch's buffer."""

    name: ClassVar[str]

    def __init__(self) -> None:
        self._buffer: dict[int, Buffered] = defaultdict(Buffered)

    def add(
        self, *, partition: int, key: str, value: Any, occurred_at: datetime, event_id: str
    ) -> None:
        buffered = self._buffer[partition]
        buffered.values[key] = value
        buffered.events[key].add(event_id)
        seen = buffered.oldest.get(key)
        if seen is None or occurred_at < seen:
            buffered.oldest[key] = occurred_at

    def __len__(self) -> int:
        return sum(len(part.values) for part in self._buffer.values())

    def detach(self) -> Buffered:
        """Everything buffered so far, as one batch to `flush`; the sink starts a new buffer."""
        parts, self._buffer = self._buffer, defaultdict(Buffered)
        merged = Buffered()
        for part in parts.values():
            merged.values.update(part.values)
            merged.events.update(part.events)  # a key lives in one partition
            merged.oldest.update(part.oldest)
        return merged

    async def flush(self, batch: Buffered | None = None) -> dict[str, str]:
        """Write `batch` (by default, everything buffered); returns {key: reason} for values the
        store refused. Raises SinkUnavailable when the store is down: flush the same batch
        again later."""
        if batch is None:
            batch = self.detach()
        if not batch.values:
            return {}
        refused = await self.write(batch)
        now = datetime.now().astimezone()
        lag = MATERIALIZATION_LAG.labels(sink=self.name)
        for key, occurred_at in batch.oldest.items():
            if key not in refused:
                lag.observe(max(0.0, (now - occurred_at).total_seconds()))
        SINK_WRITES.labels(sink=self.name).inc(len(batch.values) - len(refused))
        return refused

    @abstractmethod
    async def write(self, batch: Buffered) -> dict[str, str]:
        """Upsert `batch.values` (key -> table value); returns {key: reason} for those refused."""

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
    async def write_values(
        self, conn: asyncpg.Connection, items: list[tuple[str, Any]], batch: Buffered
    ) -> None:
        """Upsert `items` (key, value) of `batch` on `conn`, inside the transaction the base
        opened."""

    async def write(self, batch: Buffered) -> dict[str, str]:
        values = batch.values
        pool = await self.pool()
        try:
            try:
                async with pool.acquire() as conn, conn.transaction():
                    await self.write_values(conn, list(values.items()), batch)
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
                        await self.write_values(conn, [(key, value)], batch)
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
