"""/api/sessions (the seed's session service): the caller's signed-in devices, and ending them.

Ending a session refuses its refresh token and, from the very next request, its access tokens.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Query, Response, status

from api.auth.dependencies import SignedIn
from api.envelope import Envelope, ok
from api.routers import DomainRouter
from api.sessions import service
from api.sessions.schemas import RevokedOut, SessionList

router = DomainRouter(prefix="/sessions", tags=["sessions"])


@router.get("")
async def list_sessions(caller: SignedIn) -> Envelope[SessionList]:
    """The caller's live sessions, most recently used first; `current` marks this one."""
    items = await service.list_sessions(
        pool=caller.pool, mongo=caller.mongo, user_id=caller.user.id, current=caller.user.session_id
    )
    return ok(SessionList(items=items))


@router.delete("/{session_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def revoke_session(session_id: uuid.UUID, caller: SignedIn) -> None:
    """End one of the caller's sessions (the current one too: that signs the caller out)."""
    await service.revoke_session(
        pool=caller.pool,
        redis=caller.redis,
        mongo=caller.mongo,
        settings=caller.settings,
        user_id=caller.user.id,
        session_id=session_id,
    )


@router.delete("")
async def revoke_all_sessions(
    caller: SignedIn,
    keep_current: Annotated[
        bool, Query(alias="keepCurrent", description="keep the session making this request")
    ] = False,
) -> Envelope[RevokedOut]:
    """End every session of the caller; answers how many were live."""
    revoked = await service.revoke_all_sessions(
        pool=caller.pool,
        redis=caller.redis,
        mongo=caller.mongo,
        settings=caller.settings,
        user_id=caller.user.id,
        keep=caller.user.session_id if keep_current else None,
    )
    return ok(RevokedOut(revoked=revoked))
