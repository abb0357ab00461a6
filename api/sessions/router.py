"""/api/sessions (the seed's session service): the caller's signed-in devices, and ending them.

Ending a session refuses its refresh token and, from the very next request, its access tokens.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Query, Response, status

from api.auth.dependencies import CurrentUser
from api.envelope import Envelope, ok
from api.routers import DomainRouter
from api.sessions import service
from api.sessions.schemas import RevokedOut, SessionList
from api.state import MongoDep, PoolDep, RedisDep, SettingsDep

router = DomainRouter(prefix="/sessions", tags=["sessions"])


@router.get("")
async def list_sessions(user: CurrentUser, pool: PoolDep, mongo: MongoDep) -> Envelope[SessionList]:
    """The caller's live sessions, most recently used first; `current` marks this one."""
    items = await service.list_sessions(
        pool=pool, mongo=mongo, user_id=user.id, current=user.session_id
    )
    return ok(SessionList(items=items))


@router.delete("/{session_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def revoke_session(
    session_id: uuid.UUID,
    user: CurrentUser,
    pool: PoolDep,
    redis: RedisDep,
    mongo: MongoDep,
    settings: SettingsDep,
) -> None:
    """End one of the caller's sessions (the current one too: that signs the caller out)."""
    await service.revoke_session(
        pool=pool,
        redis=redis,
        mongo=mongo,
        settings=settings,
        user_id=user.id,
        session_id=session_id,
    )


@router.delete("")
async def revoke_all_sessions(
    user: CurrentUser,
    pool: PoolDep,
    redis: RedisDep,
    mongo: MongoDep,
    settings: SettingsDep,
    keep_current: Annotated[
        bool, Query(alias="keepCurrent", description="keep the session making this request")
    ] = False,
) -> Envelope[RevokedOut]:
    """End every session of the caller; answers how many were live."""
    revoked = await service.revoke_all_sessions(
        pool=pool,
        redis=redis,
        mongo=mongo,
        settings=settings,
        user_id=user.id,
        keep=user.session_id if keep_current else None,
    )
    return ok(RevokedOut(revoked=revoked))
