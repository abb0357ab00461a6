"""`relay`: outbox -> Kafka through the production OutboxRelay.

N `user.registered` envelopes are COPYed into the outbox (not timed as relay work), then
`publish_pending()` is called until every row is acked and marked: events/s, and its ratio to
the raw produce ceiling measured in the same run.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from bench.report import Row, row
from bridges.relay import OutboxRelay
from infrastructure.settings import Settings
from streams.events import new_event
from streams.topics import stream_of
from streams.users import UserRegistered

DEADLINE_S = 120.0
_COLUMNS = ["event_id", "event_type", "stream", "key", "sequence", "payload", "created_at"]


@dataclass(frozen=True)
class RelayResult:
    events: int
    batch_size: int
    copy_s: float
    publish_s: float

    @property
    def rate(self) -> float:
        return self.events / self.publish_s

    def rows(self, produce_ceiling: float | None) -> list[Row]:
        note = f"batch {self.batch_size}; rows COPYed in at {self.events / self.copy_s:,.0f}/s"
        rows = [row("relay outbox->kafka", self.rate, "events/s", note=note)]
        if produce_ceiling:
            rows.append(row("relay / produce ceiling", self.rate / produce_ceiling, "ratio"))
        return rows


def envelopes(count: int) -> list[tuple[uuid.UUID, str, str, str, int, str, datetime]]:
    """Outbox rows exactly as the write side stores them (bridges/outbox.py): each user is an
    aggregate of its own on the `users` stream, so every registration is its sequence 1. A row
    without a stream would be dead-lettered by the relay, not published to its topic."""
    records = []
    for i in range(count):
        user_id = uuid.uuid4()
        data = UserRegistered(
            user_id=user_id, email=f"bench-{i}@example.com", name=f"Bench {i}", role="worker"
        )
        event = new_event(data, aggregate_id=user_id, actor_id=user_id)
        event = event.model_copy(update={"sequence": 1})
        records.append(
            (
                event.event_id,
                event.type,
                stream_of(event.type),
                event.aggregate_id,
                1,
                event.model_dump_json(),
                event.occurred_at,
            )
        )
    return records


async def measure(settings: Settings, *, events: int) -> RelayResult:
    records = envelopes(events)
    conn = await asyncpg.connect(settings.database_url)
    try:
        if await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"):
            raise RuntimeError("the bench database's outbox is not empty")
        started = time.perf_counter()
        await conn.copy_records_to_table("outbox", records=records, columns=_COLUMNS)
        copy_s = time.perf_counter() - started
    finally:
        await conn.close()

    relay = OutboxRelay(settings)
    async with asyncio.timeout(DEADLINE_S):
        await relay.start()
        try:
            await relay.connect_kafka()  # topics and producer: set-up, not throughput
            started = time.perf_counter()
            # Each pass publishes one batch; a few spare passes, then it must be done.
            for _ in range(events // settings.relay_batch_size + 10):
                if relay.published >= events or await relay.publish_pending() == 0:
                    break
            publish_s = time.perf_counter() - started
        finally:
            await relay.stop()
    if relay.published != events:
        raise RuntimeError(f"the relay published {relay.published} of {events} events")
    return RelayResult(events, settings.relay_batch_size, copy_s, publish_s)
