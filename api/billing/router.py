"""/api/billing: a caller's own money, nobody else's (there is no route naming another user): a
client's payments, a worker's earnings and payouts."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from api.auth.dependencies import require_role
from api.auth.schemas import AuthenticatedUser
from api.billing import earnings, service
from api.billing.earnings import Earnings, PayoutPage
from api.billing.schemas import BillingSummary, PaymentPage
from api.envelope import Envelope, ok
from api.pagination import DEFAULT_LIMIT, CursorParam, Limit, decode_cursor
from api.routers import DomainRouter
from api.state import PoolDep

router = DomainRouter(prefix="/billing", tags=["billing"])

ClientUser = Annotated[AuthenticatedUser, Depends(require_role("client"))]
WorkerUser = Annotated[AuthenticatedUser, Depends(require_role("worker"))]


@router.get("/summary")
async def billing_summary(user: ClientUser, pool: PoolDep) -> Envelope[BillingSummary]:
    return ok(await service.summary(pool=pool, client_id=user.id))


@router.get("/payments")
async def billing_payments(
    user: ClientUser, pool: PoolDep, limit: Limit = DEFAULT_LIMIT, cursor: CursorParam = None
) -> Envelope[PaymentPage]:
    return ok(
        await service.payments(
            pool=pool, client_id=user.id, cursor=decode_cursor(cursor), limit=limit
        )
    )


@router.get("/earnings")
async def worker_earnings(user: WorkerUser, pool: PoolDep) -> Envelope[Earnings]:
    """The worker's payouts (transferred, waiting for a transfer, fees kept) and what is held in
    escrow for their bookings, per currency."""
    return ok(await earnings.earnings(pool=pool, worker_id=user.id))


@router.get("/payouts")
async def worker_payouts(
    user: WorkerUser, pool: PoolDep, limit: Limit = DEFAULT_LIMIT, cursor: CursorParam = None
) -> Envelope[PayoutPage]:
    """The worker's payouts, newest first."""
    return ok(
        await earnings.payouts(
            pool=pool, worker_id=user.id, cursor=decode_cursor(cursor), limit=limit
        )
    )
