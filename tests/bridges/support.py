"""Helpers for tests that drive the outbox and read Kafka: a database of their own, outbox rows,
and a consumer that reads topics from the beginning."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer

from bridges.outbox import append_event
from infrastructure.database import create_pool, unit_of_work
from streams.events import Event
from streams.packing import unpack


async def append_events(database_url: str, events: Sequence[Event]) -> None:
    """Commit `events` to the outbox the way the write side does, one transaction each."""
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        for event in events:
            async with unit_of_work(pool) as conn:
                await append_event(conn, event)
    finally:
        await pool.close()


async def outbox_rows(database_url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return list(
            await conn.fetch(
                "SELECT id, event_id, event_type, key, published_at FROM outbox ORDER BY id"
            )
        )
    finally:
        await conn.close()


async def published_event_ids(database_url: str) -> set[uuid.UUID]:
    return {row["event_id"] for row in await outbox_rows(database_url) if row["published_at"]}


async def read_topics(
    bootstrap: str,
    topics: Sequence[str],
    *,
    until: Callable[[list[Any]], bool],
    timeout: float = 20.0,
) -> list[Any]:
    """Every record of `topics` from the beginning, read until `until(records)` holds."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        async with asyncio.timeout(timeout):
            while not until(records):
                batch = await consumer.getmany(timeout_ms=200)
                for partition_records in batch.values():
                    records.extend(partition_records)
    except TimeoutError:
        raise AssertionError(
            f"only {len(records)} records on {list(topics)} after {timeout}s"
        ) from None
    finally:
        await consumer.stop()
    return records


@dataclass(frozen=True)
class Delivered:
    """One event as a stream consumer gets it: where its message was, and its place in the pack."""

    topic: str
    partition: int
    offset: int
    index: int
    message_key: bytes | None
    message_headers: list[tuple[str, bytes]]
    event: dict[str, Any]

    @property
    def position(self) -> tuple[int, int]:
        """Order within the partition: the message's offset, then the place in its pack."""
        return self.offset, self.index

    @property
    def event_id(self) -> str:
        return str(self.event["event_id"])

    @property
    def type(self) -> str:
        return str(self.event["type"])

    @property
    def key(self) -> bytes:
        """The aggregate id, which decides the partition."""
        return str(self.event["aggregate_id"]).encode()


def unpacked(records: list[Any]) -> list[Delivered]:
    """The events `records` carry, packs opened (streams/packing.py), in record order."""
    return [
        Delivered(r.topic, r.partition, r.offset, i, r.key, list(r.headers or ()), dict(envelope))
        for r in records
        for i, envelope in enumerate(unpack(r.value))
    ]


async def read_events(
    bootstrap: str, topics: Sequence[str], *, count: int, timeout: float = 20.0
) -> list[Delivered]:
    """Every event on `topics` from the beginning, once at least `count` have arrived."""
    records = await read_topics(
        bootstrap,
        topics,
        until=lambda got: len(unpacked(got)) >= count,
        timeout=timeout,
    )
    return unpacked(records)


def header(record: Any, name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return bytes(value).decode()
    return None
