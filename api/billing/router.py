"""/api/billing: a caller's own money, nobody else's (there is no route naming another user): a
client's payments, a worker's earnings and payouts."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from api.auth.dependencies import Caller, signed_in
from api.billing import earnings, service
from api.billing.earnings import Earnings, PayoutPage
from api.billing.schemas import BillingSummary, PaymentPage
from api.envelope import Envelope, ok
from api.pagination import DEFAULT_LIMIT, CursorParam, Limit, decode_cursor
from api.routers import DomainRouter

router = DomainRouter(prefix="/billing", tags=["billing"])

ClientCaller = Annotated[Caller, Depends(signed_in("client"))]
WorkerCaller = Annotated[Caller, Depends(signed_in("worker"))]


@router.get("/summary")
async def billing_summary(caller: ClientCaller) -> Envelope[BillingSummary]:
    return ok(await service.summary(pool=caller.pool, client_id=caller.user.id))


@router.get("/payments")
async def billing_payments(
    caller: ClientCaller, limit: Limit = DEFAULT_LIMIT, cursor: CursorParam = None
) -> Envelope[PaymentPage]:
    return ok(
        await service.payments(
            pool=caller.pool, client_id=caller.user.id, cursor=decode_cursor(cursor), limit=limit
        )
    )


@router.get("/earnings")
async def worker_earnings(caller: WorkerCaller) -> Envelope[Earnings]:
    """The worker's payouts (transferred, waiting for a transfer, fees kept) and what is held in
    escrow for their bookings, per currency."""
    return ok(await earnings.earnings(pool=caller.pool, worker_id=caller.user.id))


@router.get("/payouts")
async def worker_payouts(
    caller: WorkerCaller, limit: Limit = DEFAULT_LIMIT, cursor: CursorParam = None
) -> Envelope[PayoutPage]:
    """The worker's payouts, newest first."""
    return ok(
        await earnings.payouts(
            pool=caller.pool, worker_id=caller.user.id, cursor=decode_cursor(cursor), limit=limit
        )
    )
