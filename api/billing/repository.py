"""Every SQL statement of client billing: read-only sums and pages over payments and holds."""

from __future__ import annotations

import uuid

import asyncpg

from api.pagination import Cursor


async def totals_by_currency(
    conn: asyncpg.Connection, *, client_id: uuid.UUID
) -> list[asyncpg.Record]:
    """One row per currency the client ever paid (or started paying) in."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """WITH pay AS (
               SELECT currency,
                      coalesce(sum(amount_cents) FILTER (WHERE status = 'succeeded'), 0) AS paid,
                      count(*) FILTER (WHERE status = 'succeeded') AS paid_count,
                      coalesce(sum(amount_cents) FILTER (WHERE status = 'pending'), 0) AS pending,
                      sum(refunded_cents) AS refunded
                 FROM payments WHERE client_id = $1 GROUP BY currency),
           held AS (
               SELECT currency, sum(amount_cents) AS in_escrow
                 FROM escrow_holds
                WHERE client_id = $1 AND status IN ('funded', 'frozen')
                GROUP BY currency),
           released AS (
               SELECT po.currency, sum(po.amount_cents + po.fee_cents) AS released,
                      sum(po.fee_cents) AS fees
                 FROM payouts po JOIN escrow_holds e ON e.id = po.escrow_id
                WHERE e.client_id = $1 GROUP BY po.currency)
           SELECT pay.currency, pay.paid::bigint, pay.paid_count::bigint, pay.pending::bigint,
                  pay.refunded::bigint, coalesce(held.in_escrow, 0)::bigint AS in_escrow,
                  coalesce(released.released, 0)::bigint AS released,
                  coalesce(released.fees, 0)::bigint AS fees
             FROM pay
             LEFT JOIN held USING (currency)
             LEFT JOIN released USING (currency)
            ORDER BY pay.currency""",
        client_id,
    )
    return rows


async def payments_page(
    conn: asyncpg.Connection, *, client_id: uuid.UUID, cursor: Cursor | None, limit: int
) -> list[asyncpg.Record]:
    """limit + 1 payments of the client, newest first (see api/pagination.py)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT p.*, e.status AS escrow_status
             FROM payments p JOIN escrow_holds e ON e.id = p.escrow_id
            WHERE p.client_id = $1
              AND ($2::timestamptz IS NULL OR (p.created_at, p.id) < ($2, $3::uuid))
            ORDER BY p.created_at DESC, p.id DESC
            LIMIT $4""",
        client_id,
        cursor.created_at if cursor else None,
        cursor.id if cursor else None,
        limit + 1,
    )
    return rows
