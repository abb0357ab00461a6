"""/api/escrow: read a hold (its participants and admins), release it (its client)."""

from __future__ import annotations

import uuid

from api.auth.dependencies import SignedIn
from api.envelope import Envelope, ok
from api.escrow import service
from api.escrow.schemas import EscrowOut
from api.routers import DomainRouter

router = DomainRouter(prefix="/escrow", tags=["escrow"])


@router.get("/{escrow_id}")
async def read_escrow(escrow_id: uuid.UUID, caller: SignedIn) -> Envelope[EscrowOut]:
    return ok(await service.get_escrow(pool=caller.pool, user=caller.user, escrow_id=escrow_id))


@router.post("/{escrow_id}/release")
async def release_escrow(escrow_id: uuid.UUID, caller: SignedIn) -> Envelope[EscrowOut]:
    """Pay the worker the net of a funded hold once the work is delivered (or accepted)."""
    return ok(await service.release_escrow(pool=caller.pool, user=caller.user, escrow_id=escrow_id))
