"""Every SQL statement of the disputes domain."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from api.pagination import Cursor

_DISPUTE_SELECT = """
SELECT d.*, e.client_id, e.worker_id, e.status AS escrow_status, e.amount_cents, e.currency
  FROM disputes d
  JOIN escrow_holds e ON e.id = d.escrow_id
 WHERE d.id = $1
"""


async def fetch_dispute(
    conn: asyncpg.Connection, *, dispute_id: uuid.UUID, for_update: bool = False
) -> asyncpg.Record | None:
    """A dispute with its hold's parties and amount; `for_update` locks the dispute row."""
    sql = _DISPUTE_SELECT + (" FOR UPDATE OF d" if for_update else "")
    record: asyncpg.Record | None = await conn.fetchrow(sql, dispute_id)
    return record


async def insert_dispute(
    conn: asyncpg.Connection,
    *,
    dispute_id: uuid.UUID,
    project_id: uuid.UUID,
    escrow_id: uuid.UUID,
    opened_by: uuid.UUID,
    reason: str,
    evidence: list[dict[str, Any]],
    previous_project_status: str,
) -> None:
    await conn.execute(
        """INSERT INTO disputes (id, project_id, escrow_id, opened_by, reason, evidence,
                                 previous_project_status)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        dispute_id,
        project_id,
        escrow_id,
        opened_by,
        reason,
        evidence,
        previous_project_status,
    )


async def resolve_dispute(
    conn: asyncpg.Connection,
    *,
    dispute_id: uuid.UUID,
    resolution: str,
    worker_amount_cents: int,
    client_amount_cents: int,
    fee_cents: int,
    note: str | None,
    resolved_by: uuid.UUID,
) -> None:
    await conn.execute(
        """UPDATE disputes
              SET status = 'resolved', resolution = $2, worker_amount_cents = $3,
                  client_amount_cents = $4, fee_cents = $5, resolution_note = $6,
                  resolved_by = $7, resolved_at = now(), updated_at = now()
            WHERE id = $1""",
        dispute_id,
        resolution,
        worker_amount_cents,
        client_amount_cents,
        fee_cents,
        note,
        resolved_by,
    )


async def disputes_page(
    conn: asyncpg.Connection, *, status: str | None, cursor: Cursor | None, limit: int
) -> list[asyncpg.Record]:
    """limit + 1 disputes, newest first (see api/pagination.py), with their project's title,
    their hold and who opened them."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT d.id, d.project_id, pr.title AS project_title, d.escrow_id,
                  e.status AS escrow_status, e.amount_cents, e.currency,
                  d.opened_by, u.name AS opened_by_name, d.reason, d.status, d.resolution,
                  d.worker_amount_cents, d.client_amount_cents, d.fee_cents, d.resolved_by,
                  d.resolved_at, d.created_at
             FROM disputes d
             JOIN escrow_holds e ON e.id = d.escrow_id
             JOIN projects pr ON pr.id = d.project_id
             JOIN users u ON u.id = d.opened_by
            WHERE ($1::text IS NULL OR d.status = $1)
              AND ($2::timestamptz IS NULL OR (d.created_at, d.id) < ($2, $3::uuid))
            ORDER BY d.created_at DESC, d.id DESC
            LIMIT $4""",
        status,
        cursor.created_at if cursor else None,
        cursor.id if cursor else None,
        limit + 1,
    )
    return rows
