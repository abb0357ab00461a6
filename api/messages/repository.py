"""Every SQL statement of messaging."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from api.pagination import Cursor


async def fetch_project(
    conn: asyncpg.Connection, *, project_id: uuid.UUID
) -> asyncpg.Record | None:
    record: asyncpg.Record | None = await conn.fetchrow(
        "SELECT id, client_id, worker_id, status FROM projects WHERE id = $1", project_id
    )
    return record


async def worker_is_on_project(
    conn: asyncpg.Connection, *, project_id: uuid.UUID, worker_id: uuid.UUID
) -> bool:
    """Whether `worker_id` bid on the project (any bid, even withdrawn: a conversation about it
    may go on) or is booked for it."""
    found: bool = await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM bids WHERE project_id = $1 AND worker_id = $2)
               OR EXISTS (SELECT 1 FROM bookings WHERE project_id = $1 AND worker_id = $2)""",
        project_id,
        worker_id,
    )
    return found


async def open_conversation(
    conn: asyncpg.Connection,
    *,
    conversation_id: uuid.UUID,
    project_id: uuid.UUID,
    client_id: uuid.UUID,
    worker_id: uuid.UUID,
    now: datetime,
) -> tuple[asyncpg.Record, bool]:
    """The pair's conversation, and whether this call created it."""
    created: asyncpg.Record | None = await conn.fetchrow(
        """INSERT INTO conversations (id, project_id, client_id, worker_id, last_activity_at,
                                      created_at)
           VALUES ($1, $2, $3, $4, $5, $5)
           ON CONFLICT (project_id, worker_id) DO NOTHING
           RETURNING id""",
        conversation_id,
        project_id,
        client_id,
        worker_id,
        now,
    )
    record: asyncpg.Record = await conn.fetchrow(
        "SELECT id FROM conversations WHERE project_id = $1 AND worker_id = $2",
        project_id,
        worker_id,
    )
    return record, created is not None


async def fetch_conversation(
    conn: asyncpg.Connection, *, conversation_id: uuid.UUID
) -> asyncpg.Record | None:
    record: asyncpg.Record | None = await conn.fetchrow(
        "SELECT id, project_id, client_id, worker_id FROM conversations WHERE id = $1",
        conversation_id,
    )
    return record


async def next_sequence(
    conn: asyncpg.Connection, *, conversation_id: uuid.UUID, now: datetime
) -> int:
    """The next message's sequence. The row stays locked until the transaction ends, so a
    second sender waits: numbers follow commit order, with no gaps."""
    sequence: int = await conn.fetchval(
        """UPDATE conversations
              SET last_sequence = last_sequence + 1,
                  last_activity_at = greatest(last_activity_at, $2)
            WHERE id = $1
        RETURNING last_sequence""",
        conversation_id,
        now,
    )
    return sequence


async def insert_message(
    conn: asyncpg.Connection,
    *,
    message_id: uuid.UUID,
    conversation_id: uuid.UUID,
    sequence: int,
    sender_id: uuid.UUID,
    message_type: str,
    content: str,
    created_at: datetime,
) -> None:
    await conn.execute(
        """INSERT INTO messages (id, conversation_id, sequence, sender_id, type, content,
                                 created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        message_id,
        conversation_id,
        sequence,
        sender_id,
        message_type,
        content,
        created_at,
    )


_CONVERSATIONS = """
SELECT c.id, c.project_id, p.title AS project_title, c.client_id, c.worker_id, c.created_at,
       c.last_activity_at,
       o.id AS other_id, o.name AS other_name,
       CASE WHEN c.client_id = $1 THEN 'worker' ELSE 'client' END AS other_role,
       m.id AS last_id, m.sequence AS last_sequence, m.sender_id AS last_sender_id,
       m.type AS last_type, m.content AS last_content, m.created_at AS last_created_at,
       (SELECT count(*) FROM messages x
         WHERE x.conversation_id = c.id AND x.sender_id <> $1
           AND x.sequence > coalesce(r.last_read_sequence, 0)) AS unread_count
  FROM conversations c
  JOIN projects p ON p.id = c.project_id
  JOIN users o ON o.id = CASE WHEN c.client_id = $1 THEN c.worker_id ELSE c.client_id END
  LEFT JOIN messages m ON m.conversation_id = c.id AND m.sequence = c.last_sequence
  LEFT JOIN conversation_reads r ON r.conversation_id = c.id AND r.user_id = $1
"""


async def list_conversations(
    conn: asyncpg.Connection, *, user_id: uuid.UUID, cursor: Cursor | None, limit: int
) -> list[asyncpg.Record]:
    """The user's conversations, latest activity first, limit + 1 rows (api/pagination.py)."""
    return list(
        await conn.fetch(
            f"""{_CONVERSATIONS}
                WHERE (c.client_id = $1 OR c.worker_id = $1)
                  AND ($2::timestamptz IS NULL OR (c.last_activity_at, c.id) < ($2, $3::uuid))
                ORDER BY c.last_activity_at DESC, c.id DESC
                LIMIT $4""",
            user_id,
            cursor.created_at if cursor else None,
            cursor.id if cursor else None,
            limit + 1,
        )
    )


async def fetch_conversation_view(
    conn: asyncpg.Connection, *, user_id: uuid.UUID, conversation_id: uuid.UUID
) -> asyncpg.Record:
    record: asyncpg.Record = await conn.fetchrow(
        f"{_CONVERSATIONS} WHERE c.id = $2", user_id, conversation_id
    )
    return record


async def fetch_message(
    conn: asyncpg.Connection, *, conversation_id: uuid.UUID, message_id: uuid.UUID
) -> asyncpg.Record | None:
    record: asyncpg.Record | None = await conn.fetchrow(
        "SELECT id, sequence FROM messages WHERE id = $1 AND conversation_id = $2",
        message_id,
        conversation_id,
    )
    return record


async def advance_read(
    conn: asyncpg.Connection,
    *,
    conversation_id: uuid.UUID,
    user_id: uuid.UUID,
    message_id: uuid.UUID,
    sequence: int,
    now: datetime,
) -> bool:
    """Move the user's read mark forward to `sequence`; False when it was there or beyond."""
    moved: uuid.UUID | None = await conn.fetchval(
        """INSERT INTO conversation_reads
                  (conversation_id, user_id, last_read_sequence, last_read_message_id, read_at)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (conversation_id, user_id) DO UPDATE
              SET last_read_sequence = EXCLUDED.last_read_sequence,
                  last_read_message_id = EXCLUDED.last_read_message_id,
                  read_at = EXCLUDED.read_at
            WHERE conversation_reads.last_read_sequence < EXCLUDED.last_read_sequence
        RETURNING user_id""",
        conversation_id,
        user_id,
        sequence,
        message_id,
        now,
    )
    return moved is not None


async def fetch_read(
    conn: asyncpg.Connection, *, conversation_id: uuid.UUID, user_id: uuid.UUID
) -> asyncpg.Record:
    record: asyncpg.Record = await conn.fetchrow(
        """SELECT r.last_read_sequence, r.last_read_message_id, r.read_at,
                  (SELECT count(*) FROM messages x
                    WHERE x.conversation_id = r.conversation_id AND x.sender_id <> r.user_id
                      AND x.sequence > r.last_read_sequence) AS unread_count
             FROM conversation_reads r
            WHERE r.conversation_id = $1 AND r.user_id = $2""",
        conversation_id,
        user_id,
    )
    return record
