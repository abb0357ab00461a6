"""/api/disputes: open (a participant), read (participants and admins), resolve (admins)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from api.auth.dependencies import AdminUser, CurrentUser
from api.disputes import service
from api.disputes.schemas import DisputeOut, OpenDisputeRequest, ResolveDisputeRequest
from api.envelope import Envelope, ok
from api.payments.provider import StripeDep
from api.state import PoolDep

router = APIRouter(prefix="/disputes", tags=["disputes"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def open_dispute(
    body: OpenDisputeRequest, user: CurrentUser, pool: PoolDep
) -> Envelope[DisputeOut]:
    """Freeze the project's held money until an admin decides where it goes."""
    return ok(await service.open_dispute(pool=pool, user=user, body=body))


@router.get("/{dispute_id}")
async def read_dispute(
    dispute_id: uuid.UUID, user: CurrentUser, pool: PoolDep
) -> Envelope[DisputeOut]:
    return ok(await service.get_dispute(pool=pool, user=user, dispute_id=dispute_id))


@router.post("/{dispute_id}/resolve")
async def resolve_dispute(
    dispute_id: uuid.UUID,
    body: ResolveDisputeRequest,
    admin: AdminUser,
    pool: PoolDep,
    stripe: StripeDep,
) -> Envelope[DisputeOut]:
    return ok(
        await service.resolve_dispute(
            pool=pool, stripe=stripe, admin=admin, dispute_id=dispute_id, body=body
        )
    )
