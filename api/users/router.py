"""/api/users: the signed-in user's profile and settings, and workers' public profiles.

Writes are "me" only: there is no route that names another user's profile for writing, so no
per-object check can be forgotten. PUT and PATCH both merge: fields left out keep their value.
"""

from __future__ import annotations

import uuid

from api.auth.dependencies import SignedIn
from api.envelope import Envelope, ok
from api.routers import DomainRouter
from api.state import PoolDep
from api.users import service
from api.users.schemas import ProfileOut, ProfileUpdate, PublicWorkerProfile, UserSettings

router = DomainRouter(prefix="/users", tags=["users"])


@router.get("/me/profile")
async def read_my_profile(caller: SignedIn) -> Envelope[ProfileOut]:
    return ok(await service.get_profile(pool=caller.pool, user_id=caller.user.id))


@router.put("/me/profile")
@router.patch("/me/profile")
async def update_my_profile(body: ProfileUpdate, caller: SignedIn) -> Envelope[ProfileOut]:
    return ok(await service.update_profile(pool=caller.pool, user_id=caller.user.id, body=body))


@router.get("/me/settings")
async def read_my_settings(caller: SignedIn) -> Envelope[UserSettings]:
    return ok(await service.get_settings(pool=caller.pool, user_id=caller.user.id))


@router.put("/me/settings")
@router.patch("/me/settings")
async def update_my_settings(body: UserSettings, caller: SignedIn) -> Envelope[UserSettings]:
    updated = await service.update_settings(
        pool=caller.pool, user_id=caller.user.id, role=caller.user.role, body=body
    )
    return ok(updated)


@router.get("/{user_id}")
async def read_public_profile(user_id: uuid.UUID, pool: PoolDep) -> Envelope[PublicWorkerProfile]:
    """A worker's public profile; anyone may read it, signed in or not."""
    return ok(await service.get_public_profile(pool=pool, user_id=user_id))
