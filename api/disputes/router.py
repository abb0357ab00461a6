"""/api/disputes: open (a participant), read (participants and admins), list and resolve
(admins)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Query, status

from api.auth.dependencies import Admin, SignedIn
from api.disputes import service
from api.disputes.schemas import (
    DisputeOut,
    DisputePage,
    DisputeStatus,
    OpenDisputeRequest,
    ResolveDisputeRequest,
)
from api.envelope import Envelope, ok
from api.pagination import DEFAULT_LIMIT, CursorParam, Limit, decode_cursor
from api.payments.provider import StripeDep
from api.routers import DomainRouter

router = DomainRouter(prefix="/disputes", tags=["disputes"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def open_dispute(body: OpenDisputeRequest, caller: SignedIn) -> Envelope[DisputeOut]:
    """Freeze the project's held money until an admin decides where it goes."""
    return ok(await service.open_dispute(pool=caller.pool, user=caller.user, body=body))


@router.get("")
async def list_disputes(
    caller: Admin,
    status_: Annotated[DisputeStatus | None, Query(alias="status")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> Envelope[DisputePage]:
    """Every dispute, newest first: the admins' queue (`status=open`) and its record."""
    return ok(
        await service.list_disputes(
            pool=caller.pool, status=status_, cursor=decode_cursor(cursor), limit=limit
        )
    )


@router.get("/{dispute_id}")
async def read_dispute(dispute_id: uuid.UUID, caller: SignedIn) -> Envelope[DisputeOut]:
    return ok(await service.get_dispute(pool=caller.pool, user=caller.user, dispute_id=dispute_id))


@router.post("/{dispute_id}/resolve")
async def resolve_dispute(
    dispute_id: uuid.UUID, body: ResolveDisputeRequest, caller: Admin, stripe: StripeDep
) -> Envelope[DisputeOut]:
    return ok(
        await service.resolve_dispute(
            pool=caller.pool, stripe=stripe, admin=caller.user, dispute_id=dispute_id, body=body
        )
    )
