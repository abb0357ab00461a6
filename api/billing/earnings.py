"""A worker's side of the money: what was paid out, what waits for a transfer, what is still held
for their bookings, and the payouts one by one. The client's side is service.py."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

import asyncpg

from api.pagination import Cursor, split_page
from api.schemas import ResponseModel


class EarningsTotals(ResponseModel):
    """A worker's money in one currency. Payouts are net of the platform fee (`feesCents` is what
    the platform kept on them); `heldCents` is gross, before the fee its release will keep."""

    currency: str
    # Transferred to the worker's account.
    paid_out_cents: int
    # Released to the worker, the transfer not made yet.
    pending_transfer_cents: int
    payouts_count: int
    # The platform fee kept on this worker's payouts.
    fees_cents: int
    # Held in escrow for the worker's bookings now (funded, or frozen by a dispute).
    held_cents: int


class Earnings(ResponseModel):
    currencies: list[EarningsTotals]


class PayoutItem(ResponseModel):
    payout_id: uuid.UUID
    escrow_id: uuid.UUID
    booking_id: uuid.UUID
    project_id: uuid.UUID
    amount_cents: int
    fee_cents: int
    currency: str
    status: Literal["pending_transfer", "transferred"]
    # Set when the payout is a dispute's split or release.
    dispute_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class PayoutPage(ResponseModel):
    items: list[PayoutItem]
    # Pass as `cursor` for the next page; null on the last one.
    next_cursor: str | None


_TOTALS = """
WITH paid AS (
    SELECT currency,
           coalesce(sum(amount_cents) FILTER (WHERE status = 'transferred'), 0) AS paid_out,
           coalesce(sum(amount_cents) FILTER (WHERE status = 'pending_transfer'), 0) AS pending,
           count(*) AS payouts,
           sum(fee_cents) AS fees
      FROM payouts WHERE worker_id = $1 GROUP BY currency),
held AS (
    SELECT currency, sum(amount_cents) AS held
      FROM escrow_holds WHERE worker_id = $1 AND status IN ('funded', 'frozen')
     GROUP BY currency)
SELECT currency, coalesce(paid.paid_out, 0)::bigint AS paid_out,
       coalesce(paid.pending, 0)::bigint AS pending, coalesce(paid.payouts, 0)::bigint AS payouts,
       coalesce(paid.fees, 0)::bigint AS fees, coalesce(held.held, 0)::bigint AS held
  FROM paid FULL JOIN held USING (currency)
 ORDER BY currency"""

_PAGE = """
SELECT po.*, e.booking_id, e.project_id
  FROM payouts po JOIN escrow_holds e ON e.id = po.escrow_id
 WHERE po.worker_id = $1
   AND ($2::timestamptz IS NULL OR (po.created_at, po.id) < ($2, $3::uuid))
 ORDER BY po.created_at DESC, po.id DESC
 LIMIT $4"""


async def earnings(*, pool: asyncpg.Pool, worker_id: uuid.UUID) -> Earnings:
    async with pool.acquire() as conn:
        rows = await conn.fetch(_TOTALS, worker_id)
    return Earnings(
        currencies=[
            EarningsTotals(
                currency=row["currency"],
                paid_out_cents=row["paid_out"],
                pending_transfer_cents=row["pending"],
                payouts_count=row["payouts"],
                fees_cents=row["fees"],
                held_cents=row["held"],
            )
            for row in rows
        ]
    )


async def payouts(
    *, pool: asyncpg.Pool, worker_id: uuid.UUID, cursor: Cursor | None, limit: int
) -> PayoutPage:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            _PAGE,
            worker_id,
            cursor.created_at if cursor else None,
            cursor.id if cursor else None,
            limit + 1,
        )
    page, next_cursor = split_page(rows, limit=limit)
    return PayoutPage(
        items=[
            PayoutItem(
                payout_id=row["id"],
                escrow_id=row["escrow_id"],
                booking_id=row["booking_id"],
                project_id=row["project_id"],
                amount_cents=row["amount_cents"],
                fee_cents=row["fee_cents"],
                currency=row["currency"],
                status=row["status"],
                dispute_id=row["dispute_id"],
                created_at=row["created_at"],
                updated_at=row["updated_at"],
            )
            for row in page
        ],
        next_cursor=next_cursor,
    )
