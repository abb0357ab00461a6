"""Every SQL statement of bids."""

from __future__ import annotations

import uuid

import asyncpg

from api.pagination import Cursor

_COLUMNS = """b.id, b.project_id, b.worker_id, b.amount_cents, b.currency, b.delivery_days,
              b.proposal, b.status, b.created_at, b.updated_at"""


async def insert_bid(
    conn: asyncpg.Connection,
    *,
    bid_id: uuid.UUID,
    project_id: uuid.UUID,
    worker_id: uuid.UUID,
    amount_cents: int,
    currency: str,
    delivery_days: int,
    proposal: str,
) -> asyncpg.Record:
    """A pending bid; raises asyncpg.UniqueViolationError if the worker has a live one here."""
    record: asyncpg.Record = await conn.fetchrow(
        f"""INSERT INTO bids AS b (id, project_id, worker_id, amount_cents, currency,
                                   delivery_days, proposal)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            RETURNING {_COLUMNS}""",
        bid_id,
        project_id,
        worker_id,
        amount_cents,
        currency,
        delivery_days,
        proposal,
    )
    return record


async def fetch_bid(
    conn: asyncpg.Connection, *, bid_id: uuid.UUID, project_id: uuid.UUID, for_update: bool = False
) -> asyncpg.Record | None:
    """A bid of this project (None for a bid of another project), with its worker's account
    state; `for_update` locks the bid row only."""
    record: asyncpg.Record | None = await conn.fetchrow(
        f"""SELECT {_COLUMNS}, u.is_active AS worker_is_active
              FROM bids b JOIN users u ON u.id = b.worker_id
             WHERE b.id = $1 AND b.project_id = $2"""
        + (" FOR UPDATE OF b" if for_update else ""),
        bid_id,
        project_id,
    )
    return record


async def list_bids(
    conn: asyncpg.Connection,
    *,
    project_id: uuid.UUID,
    worker_id: uuid.UUID | None,
    cursor: Cursor | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Newest first, limit + 1 rows (api/pagination.py); only `worker_id`'s when given."""
    return list(
        await conn.fetch(
            f"""SELECT {_COLUMNS} FROM bids b
                 WHERE b.project_id = $1
                   AND ($2::uuid IS NULL OR b.worker_id = $2)
                   AND ($3::timestamptz IS NULL OR (b.created_at, b.id) < ($3, $4::uuid))
                 ORDER BY b.created_at DESC, b.id DESC
                 LIMIT $5""",
            project_id,
            worker_id,
            cursor.created_at if cursor else None,
            cursor.id if cursor else None,
            limit + 1,
        )
    )


async def set_status(conn: asyncpg.Connection, *, bid_id: uuid.UUID, status: str) -> asyncpg.Record:
    record: asyncpg.Record = await conn.fetchrow(
        f"""UPDATE bids AS b SET status = $2, updated_at = now() WHERE b.id = $1
            RETURNING {_COLUMNS}""",
        bid_id,
        status,
    )
    return record


async def reject_pending(conn: asyncpg.Connection, *, project_id: uuid.UUID) -> list[uuid.UUID]:
    """Reject every bid of the project still pending; their ids, oldest first."""
    rows = await conn.fetch(
        """UPDATE bids SET status = 'rejected', updated_at = now()
            WHERE project_id = $1 AND status = 'pending'
        RETURNING id, created_at""",
        project_id,
    )
    return [row["id"] for row in sorted(rows, key=lambda row: (row["created_at"], row["id"]))]


async def count_live(conn: asyncpg.Connection, *, project_id: uuid.UUID) -> int:
    """Bids of the project still pending or accepted."""
    count: int = await conn.fetchval(
        "SELECT count(*) FROM bids WHERE project_id = $1 AND status IN ('pending', 'accepted')",
        project_id,
    )
    return count
