"""The transactional outbox: write side appends events in the entity's transaction.

The relay that publishes them to Kafka lives in `bridges/relay.py`.
"""

from __future__ import annotations

import asyncpg

from streams.events import Event


async def append_event(conn: asyncpg.Connection, event: Event) -> None:
    """Record `event` in the caller's transaction; it is published only if that commits."""
    await conn.execute(
        """INSERT INTO outbox (event_id, event_type, key, payload, created_at)
           VALUES ($1, $2, $3, $4, $5)""",
        event.event_id,
        event.type,
        event.aggregate_id,
        event.model_dump(mode="json"),
        event.occurred_at,
    )
