"""The transactional outbox: write side appends events in the entity's transaction.

Each event takes the next sequence number of its aggregate (stream + key, streams/topics.py) in
the same statement, and the envelope stored carries it. The row lock on the aggregate's counter
is held until the transaction ends, so a second writer of the same aggregate waits for this one
to commit or roll back: numbers are given out in commit order, with no gaps.

The relay that publishes them to Kafka lives in `bridges/relay.py`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import asyncpg

from streams.events import Event
from streams.topics import stream_of

APPEND_SQL = """
WITH next AS (
    INSERT INTO outbox_streams (stream, key, last_sequence) VALUES ($3, $4, 1)
    ON CONFLICT (stream, key) DO UPDATE SET last_sequence = outbox_streams.last_sequence + 1
    RETURNING last_sequence
)
INSERT INTO outbox (event_id, event_type, stream, key, sequence, payload, created_at)
SELECT $1, $2, $3, $4, next.last_sequence,
       $5::jsonb || jsonb_build_object('sequence', next.last_sequence), $6
  FROM next
RETURNING sequence"""


@functools.lru_cache(maxsize=256)
def _with_change(change_sql: str, arity: int) -> str:
    """APPEND_SQL after a data-modifying statement taking $1..$arity, as one statement.

    The counter moves only if the change touched a row, so a change that matched nothing leaves
    no event and no gap in the aggregate's sequence. The statement answers the change's rows.
    Cached: the hot writes ask for the same few statements on every request."""
    first = arity + 1
    event_id, event_type, stream, key, payload, created_at = (
        f"${n}" for n in range(first, first + 6)
    )
    return f"""
WITH change AS ({change_sql}),
next AS (
    INSERT INTO outbox_streams (stream, key, last_sequence)
    SELECT {stream}, {key}, 1 WHERE EXISTS (SELECT FROM change)
    ON CONFLICT (stream, key) DO UPDATE SET last_sequence = outbox_streams.last_sequence + 1
    RETURNING last_sequence
), appended AS (
    INSERT INTO outbox (event_id, event_type, stream, key, sequence, payload, created_at)
    SELECT {event_id}, {event_type}, {stream}, {key}, next.last_sequence,
           {payload}::jsonb || jsonb_build_object('sequence', next.last_sequence), {created_at}
      FROM next
)
SELECT * FROM change"""


def _arguments(event: Event) -> tuple[Any, ...]:
    return (
        event.event_id,
        event.type,
        stream_of(event.type),
        event.aggregate_id,
        event.model_dump(mode="json", exclude={"sequence"}),
        event.occurred_at,
    )


async def append_event(conn: asyncpg.Connection, event: Event) -> int:
    """Record `event` in the caller's transaction (published only if that commits); returns the
    sequence number it got within its aggregate."""
    sequence: int = await conn.fetchval(APPEND_SQL, *_arguments(event))
    return sequence


async def append_event_with(
    conn: asyncpg.Connection, event: Event, change_sql: str, *args: Any
) -> asyncpg.Record | None:
    """Run `change_sql` (an INSERT, UPDATE or DELETE … RETURNING on $1..$n = `args`) and record
    `event` in one round trip: the hot writes' entity change and its outbox row. The event is
    recorded only if the change touched a row. Returns the change's first row, or None."""
    record: asyncpg.Record | None = await conn.fetchrow(
        _with_change(change_sql, len(args)), *args, *_arguments(event)
    )
    return record


async def append_events(conn: asyncpg.Connection, events: Sequence[Event]) -> None:
    """Record many events in the caller's transaction, in order, in one pipelined round trip
    (imports, replays of history into a test or benchmark database)."""
    await conn.executemany(APPEND_SQL, [_arguments(event) for event in events])
