"""/api/projects/{id}/bids: workers bid on open projects; the project's client accepts one.

Withdrawing has two spellings, `DELETE …/bids/{bidId}` and `POST …/bids/{bidId}/withdraw`;
both keep the bid (as `withdrawn`) for the record, so neither really deletes anything.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, status

from api.auth.dependencies import Caller, SignedIn, signed_in
from api.bids import service
from api.bids.schemas import BidAcceptance, BidCreate, BidOut, BidPage
from api.envelope import Envelope, ok
from api.pagination import DEFAULT_LIMIT, CursorParam, Limit, decode_cursor
from api.routers import DomainRouter
from api.schemas import ExactJsonRoute

router = DomainRouter(
    prefix="/projects/{project_id}/bids", tags=["bids"], route_class=ExactJsonRoute
)

WorkerCaller = Annotated[Caller, Depends(signed_in("worker"))]


@router.post("", status_code=status.HTTP_201_CREATED)
async def submit_bid(
    project_id: uuid.UUID, body: BidCreate, caller: WorkerCaller
) -> Envelope[BidOut]:
    return ok(
        await service.submit_bid(
            pool=caller.pool, worker=caller.user, project_id=project_id, body=body
        )
    )


@router.get("")
async def list_bids(
    project_id: uuid.UUID,
    caller: SignedIn,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> Envelope[BidPage]:
    """Newest first. The project's client sees every bid; a worker only their own."""
    page = await service.list_bids(
        pool=caller.pool,
        user=caller.user,
        project_id=project_id,
        cursor=decode_cursor(cursor),
        limit=limit,
    )
    return ok(page)


@router.post("/{bid_id}/accept")
async def accept_bid(
    project_id: uuid.UUID, bid_id: uuid.UUID, caller: SignedIn
) -> Envelope[BidAcceptance]:
    accepted = await service.accept_bid(
        pool=caller.pool, user=caller.user, project_id=project_id, bid_id=bid_id
    )
    return ok(accepted)


@router.post("/{bid_id}/withdraw")
@router.delete("/{bid_id}")
async def withdraw_bid(
    project_id: uuid.UUID, bid_id: uuid.UUID, caller: SignedIn
) -> Envelope[BidOut]:
    withdrawn = await service.withdraw_bid(
        pool=caller.pool, user=caller.user, project_id=project_id, bid_id=bid_id
    )
    return ok(withdrawn)
