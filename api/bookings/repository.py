"""Every SQL statement of bookings and of the escrow hold each booking creates."""

from __future__ import annotations

import uuid

import asyncpg

from api.pagination import Cursor

# A booking with its escrow hold: the hold is made with the booking and never goes away.
_SELECT = """
SELECT bk.id, bk.project_id, bk.bid_id, bk.client_id, bk.worker_id, bk.agreed_amount_cents,
       bk.currency, bk.created_at,
       h.id AS hold_id, h.status AS hold_status, h.amount_cents AS hold_amount_cents,
       h.fee_cents AS hold_fee_cents, h.net_cents AS hold_net_cents,
       h.funded_at AS hold_funded_at, h.released_at AS hold_released_at,
       h.refunded_at AS hold_refunded_at, h.updated_at AS hold_updated_at
  FROM bookings bk
  JOIN escrow_holds h ON h.booking_id = bk.id
"""


async def insert_booking(
    conn: asyncpg.Connection,
    *,
    booking_id: uuid.UUID,
    project_id: uuid.UUID,
    bid_id: uuid.UUID,
    client_id: uuid.UUID,
    worker_id: uuid.UUID,
    agreed_amount_cents: int,
    currency: str,
) -> None:
    """Raises asyncpg.UniqueViolationError if the project (or the bid) is already booked."""
    await conn.execute(
        """INSERT INTO bookings (id, project_id, bid_id, client_id, worker_id,
                                 agreed_amount_cents, currency)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        booking_id,
        project_id,
        bid_id,
        client_id,
        worker_id,
        agreed_amount_cents,
        currency,
    )


async def insert_escrow_hold(
    conn: asyncpg.Connection,
    *,
    hold_id: uuid.UUID,
    booking_id: uuid.UUID,
    project_id: uuid.UUID,
    client_id: uuid.UUID,
    worker_id: uuid.UUID,
    amount_cents: int,
    fee_cents: int,
    net_cents: int,
    currency: str,
) -> None:
    """The booking's hold, 'unfunded' until the payments domain funds it."""
    await conn.execute(
        """INSERT INTO escrow_holds (id, booking_id, project_id, client_id, worker_id,
                                     amount_cents, fee_cents, net_cents, currency)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        hold_id,
        booking_id,
        project_id,
        client_id,
        worker_id,
        amount_cents,
        fee_cents,
        net_cents,
        currency,
    )


async def fetch_booking(
    conn: asyncpg.Connection, *, booking_id: uuid.UUID
) -> asyncpg.Record | None:
    record: asyncpg.Record | None = await conn.fetchrow(f"{_SELECT} WHERE bk.id = $1", booking_id)
    return record


async def fetch_project_booking(
    conn: asyncpg.Connection, *, project_id: uuid.UUID, lock_hold: bool = False
) -> asyncpg.Record | None:
    """The booking of a project with its hold; `lock_hold` locks the hold row.

    Lock order across the gig domains: the project row first, then its escrow hold.
    """
    record: asyncpg.Record | None = await conn.fetchrow(
        f"{_SELECT} WHERE bk.project_id = $1" + (" FOR UPDATE OF h" if lock_hold else ""),
        project_id,
    )
    return record


async def bookings_page(
    conn: asyncpg.Connection,
    *,
    party_id: uuid.UUID | None,
    escrow_status: str | None,
    cursor: Cursor | None,
    limit: int,
) -> list[asyncpg.Record]:
    """limit + 1 bookings, newest first (see api/pagination.py): those where `party_id` is the
    client or the worker, or every booking when it is None (admins)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT bk.id, bk.project_id, pr.title AS project_title, bk.client_id,
                  c.name AS client_name, bk.worker_id, w.name AS worker_name,
                  bk.agreed_amount_cents, bk.currency, bk.created_at,
                  h.id AS hold_id, h.status AS hold_status
             FROM bookings bk
             JOIN escrow_holds h ON h.booking_id = bk.id
             JOIN projects pr ON pr.id = bk.project_id
             JOIN users c ON c.id = bk.client_id
             JOIN users w ON w.id = bk.worker_id
            WHERE ($1::uuid IS NULL OR bk.client_id = $1 OR bk.worker_id = $1)
              AND ($2::text IS NULL OR h.status = $2)
              AND ($3::timestamptz IS NULL OR (bk.created_at, bk.id) < ($3, $4::uuid))
            ORDER BY bk.created_at DESC, bk.id DESC
            LIMIT $5""",
        party_id,
        escrow_status,
        cursor.created_at if cursor else None,
        cursor.id if cursor else None,
        limit + 1,
    )
    return rows
