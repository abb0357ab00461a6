"""Client billing: totals per currency and the client's payments, page by page."""

from __future__ import annotations

import uuid

import asyncpg

from api.billing import repository
from api.billing.schemas import BillingSummary, CurrencyTotals, PaymentItem, PaymentPage
from api.pagination import Cursor, split_page


async def summary(*, pool: asyncpg.Pool, client_id: uuid.UUID) -> BillingSummary:
    async with pool.acquire() as conn:
        rows = await repository.totals_by_currency(conn, client_id=client_id)
    return BillingSummary(
        currencies=[
            CurrencyTotals(
                currency=row["currency"],
                paid_cents=row["paid"],
                payments_count=row["paid_count"],
                pending_cents=row["pending"],
                refunded_cents=row["refunded"],
                in_escrow_cents=row["in_escrow"],
                released_cents=row["released"],
                fees_cents=row["fees"],
            )
            for row in rows
        ]
    )


async def payments(
    *, pool: asyncpg.Pool, client_id: uuid.UUID, cursor: Cursor | None, limit: int
) -> PaymentPage:
    async with pool.acquire() as conn:
        rows = await repository.payments_page(conn, client_id=client_id, cursor=cursor, limit=limit)
    page, next_cursor = split_page(rows, limit=limit)
    return PaymentPage(
        items=[
            PaymentItem(
                payment_id=row["id"],
                booking_id=row["booking_id"],
                project_id=row["project_id"],
                escrow_id=row["escrow_id"],
                amount_cents=row["amount_cents"],
                fee_cents=row["fee_cents"],
                net_cents=row["net_cents"],
                refunded_cents=row["refunded_cents"],
                currency=row["currency"],
                status=row["status"],
                escrow_status=row["escrow_status"],
                failure_message=row["failure_message"],
                created_at=row["created_at"],
                succeeded_at=row["succeeded_at"],
            )
            for row in page
        ],
        next_cursor=next_cursor,
    )
