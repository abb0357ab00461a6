"""Every SQL statement of the escrow domain: holds, payouts, refunds.

Locks are always taken in one order, project → escrow hold → payment, by every writer (the
webhook, release, disputes, the project-cancel refund), so two of them never deadlock.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection

import asyncpg

from api.escrow import lifecycle
from api.moves import conditional_move
from api.projects.lifecycle import Actor


async def project_of_escrow(conn: asyncpg.Connection, *, escrow_id: uuid.UUID) -> uuid.UUID | None:
    """The project of a hold (immutable, so it can be read before taking the locks)."""
    project_id: uuid.UUID | None = await conn.fetchval(
        "SELECT project_id FROM escrow_holds WHERE id = $1", escrow_id
    )
    return project_id


async def lock_project(conn: asyncpg.Connection, *, project_id: uuid.UUID) -> asyncpg.Record | None:
    record: asyncpg.Record | None = await conn.fetchrow(
        "SELECT id, client_id, worker_id, status FROM projects WHERE id = $1 FOR UPDATE",
        project_id,
    )
    return record


async def lock_escrow(conn: asyncpg.Connection, *, escrow_id: uuid.UUID) -> asyncpg.Record | None:
    record: asyncpg.Record | None = await conn.fetchrow(
        "SELECT * FROM escrow_holds WHERE id = $1 FOR UPDATE", escrow_id
    )
    return record


async def lock_escrow_of_project(
    conn: asyncpg.Connection, *, project_id: uuid.UUID
) -> asyncpg.Record | None:
    record: asyncpg.Record | None = await conn.fetchrow(
        "SELECT * FROM escrow_holds WHERE project_id = $1 FOR UPDATE", project_id
    )
    return record


async def fetch_escrow_view(
    conn: asyncpg.Connection, *, escrow_id: uuid.UUID
) -> asyncpg.Record | None:
    """A hold with its latest payment, payout and refunded total, as GET /api/escrow/{id} shows it
    (the lists of each are `payments_of_escrow`, `payouts_of_escrow`, `refunds_of_escrow`)."""
    # The latest payment only, so that the hold stays one row however many intents it has had.
    record: asyncpg.Record | None = await conn.fetchrow(
        """SELECT e.*, p.id AS payment_id, p.status AS payment_status,
                  po.id AS payout_id, po.amount_cents AS payout_amount_cents,
                  po.fee_cents AS payout_fee_cents, po.status AS payout_status,
                  coalesce((SELECT sum(r.amount_cents) FROM refunds r WHERE r.escrow_id = e.id),
                           0)::bigint AS refunded_cents
             FROM escrow_holds e
             LEFT JOIN LATERAL (
                  SELECT id, status FROM payments WHERE escrow_id = e.id
                   ORDER BY created_at DESC, id DESC LIMIT 1) p ON true
             LEFT JOIN payouts po ON po.escrow_id = e.id
            WHERE e.id = $1""",
        escrow_id,
    )
    return record


async def payments_of_escrow(
    conn: asyncpg.Connection, *, escrow_id: uuid.UUID
) -> list[asyncpg.Record]:
    """Every payment made for the hold (one per PaymentIntent), oldest first."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT id, stripe_payment_intent_id, amount_cents, fee_cents, net_cents, refunded_cents,
                  currency, status, failure_code, failure_message, succeeded_at, created_at,
                  updated_at
             FROM payments WHERE escrow_id = $1
            ORDER BY created_at, id""",
        escrow_id,
    )
    return rows


async def payouts_of_escrow(
    conn: asyncpg.Connection, *, escrow_id: uuid.UUID
) -> list[asyncpg.Record]:
    """What the hold owes or paid the worker, oldest first."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT id, amount_cents, fee_cents, currency, status, dispute_id, created_at,
                  updated_at
             FROM payouts WHERE escrow_id = $1
            ORDER BY created_at, id""",
        escrow_id,
    )
    return rows


async def refunds_of_escrow(
    conn: asyncpg.Connection, *, escrow_id: uuid.UUID
) -> list[asyncpg.Record]:
    """What was given back to the client from the hold, oldest first."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT id, payment_id, amount_cents, currency, reason, dispute_id, created_at
             FROM refunds WHERE escrow_id = $1
            ORDER BY created_at, id""",
        escrow_id,
    )
    return rows


async def move_hold(
    conn: asyncpg.Connection,
    *,
    escrow_id: uuid.UUID,
    source: str | Collection[str],
    target: str,
    actor: Actor,
) -> None:
    """The one writer of escrow_holds.status: move the hold from `source` (one status or any of
    several) to `target`, stamping the time the target records.

    The edge must be in api/escrow/lifecycle.py (a move not there is a bug: IllegalMove). The
    UPDATE is conditional on the status the caller decided from: a hold moved meanwhile is a
    409 ESCROW_STATUS_CHANGED, never overwritten.
    """
    sources = [source] if isinstance(source, str) else sorted(set(source))
    lifecycle.require_edge(sources, target, actor=actor)
    stamps = "".join(f", {column} = now()" for column in lifecycle.STAMPS[target])
    current = await conditional_move(
        conn, table="escrow_holds", row_id=escrow_id, sources=sources, target=target, sets=stamps
    )
    if current is not None:
        raise lifecycle.stale(escrow_id, sources, target, current)


async def insert_payout(
    conn: asyncpg.Connection,
    *,
    payout_id: uuid.UUID,
    escrow_id: uuid.UUID,
    worker_id: uuid.UUID,
    amount_cents: int,
    fee_cents: int,
    currency: str,
    dispute_id: uuid.UUID | None,
) -> None:
    """Record what the worker is owed; the unique escrow_id makes a second payout impossible."""
    await conn.execute(
        """INSERT INTO payouts (id, escrow_id, worker_id, amount_cents, fee_cents, currency,
                                dispute_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        payout_id,
        escrow_id,
        worker_id,
        amount_cents,
        fee_cents,
        currency,
        dispute_id,
    )


async def insert_refund(
    conn: asyncpg.Connection,
    *,
    refund_id: uuid.UUID,
    payment_id: uuid.UUID,
    escrow_id: uuid.UUID,
    stripe_refund_id: str | None,
    amount_cents: int,
    currency: str,
    reason: str,
    dispute_id: uuid.UUID | None,
    created_by: uuid.UUID | None,
) -> bool:
    """Record a refund; False when this Stripe refund is already recorded (nothing changes)."""
    inserted = await conn.fetchval(
        """INSERT INTO refunds (id, payment_id, escrow_id, stripe_refund_id, amount_cents,
                                currency, reason, dispute_id, created_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (stripe_refund_id) DO NOTHING
           RETURNING true""",
        refund_id,
        payment_id,
        escrow_id,
        stripe_refund_id,
        amount_cents,
        currency,
        reason,
        dispute_id,
        created_by,
    )
    if inserted:
        await conn.execute(
            """UPDATE payments SET refunded_cents = refunded_cents + $2, updated_at = now()
                WHERE id = $1""",
            payment_id,
            amount_cents,
        )
    return bool(inserted)


async def refunded_total(conn: asyncpg.Connection, *, payment_id: uuid.UUID) -> int:
    total: int = await conn.fetchval(
        "SELECT coalesce(sum(amount_cents), 0)::bigint FROM refunds WHERE payment_id = $1",
        payment_id,
    )
    return total
