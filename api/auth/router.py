"""/api/auth: register, login, refresh, logout, me (seed contract, DESIGN.md §3).

Logout needs no access token: the refresh token in the body is itself the proof of the session
it ends, and a client whose access token has expired must still be able to sign out.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from api.auth import service
from api.auth.dependencies import CurrentUser
from api.auth.schemas import (
    LoginRequest,
    MeOut,
    RefreshRequest,
    RegisterRequest,
    SessionOut,
    TokensOut,
)
from api.envelope import Envelope, ok
from api.state import PoolDep, RedisDep, SettingsDep

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/register", status_code=status.HTTP_201_CREATED)
async def register(
    body: RegisterRequest, pool: PoolDep, settings: SettingsDep
) -> Envelope[SessionOut]:
    return ok(await service.register(pool=pool, settings=settings, body=body))


@router.post("/login")
async def login(
    body: LoginRequest, request: Request, pool: PoolDep, redis: RedisDep, settings: SettingsDep
) -> Envelope[SessionOut]:
    # The socket's peer. Behind a proxy, run uvicorn with --forwarded-allow-ips so this is the
    # real client; X-Forwarded-For is never read here, since any caller can set it.
    client_ip = request.client.host if request.client else "unknown"
    session = await service.login(
        pool=pool, redis=redis, settings=settings, body=body, client_ip=client_ip
    )
    return ok(session)


@router.post("/refresh")
async def refresh(
    body: RefreshRequest, pool: PoolDep, settings: SettingsDep
) -> Envelope[TokensOut]:
    return ok(await service.refresh(pool=pool, settings=settings, refresh_token=body.refresh_token))


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def logout(body: RefreshRequest, pool: PoolDep, settings: SettingsDep) -> None:
    await service.logout(pool=pool, settings=settings, refresh_token=body.refresh_token)


@router.get("/me")
async def me(user: CurrentUser, pool: PoolDep) -> Envelope[MeOut]:
    return ok(await service.describe(pool=pool, user=user))
