"""/api/auth: register, login, refresh, logout, me (seed contract, DESIGN.md §3).

Logout needs no access token: the refresh token in the body is itself the proof of the session
it ends, and a client whose access token has expired must still be able to sign out.
"""

from __future__ import annotations

from fastapi import Request, Response, status

from api.auth import passwords, rate_limit, service
from api.auth.dependencies import SignedIn
from api.auth.schemas import (
    LoginRequest,
    MeOut,
    RefreshRequest,
    RegisterRequest,
    SessionOut,
    TokensOut,
)
from api.envelope import Envelope, ok
from api.routers import DomainRouter
from api.sessions.devices import Device, parse_user_agent
from api.state import StateDep

router = DomainRouter(prefix="/auth", tags=["auth"])


def _client_ip(request: Request) -> str:
    # The socket's peer. Behind a proxy, run uvicorn with --forwarded-allow-ips so this is the
    # real client; X-Forwarded-For is never read here, since any caller can set it.
    return request.client.host if request.client else "unknown"


def _device(request: Request) -> Device:
    return parse_user_agent(request.headers.get("user-agent"))


@router.post("/register", status_code=status.HTTP_201_CREATED)
async def register(
    body: RegisterRequest, request: Request, state: StateDep
) -> Envelope[SessionOut]:
    # As for login: a registration refused for want of a place in the bcrypt queue is not
    # counted against the address. The slot is held through the insert too, a few ms more.
    with passwords.hashing_slot(queue_per_thread=state.settings.bcrypt_queue_per_thread):
        await rate_limit.count_registration(
            state.redis,
            ip=_client_ip(request),
            max_per_ip=state.settings.register_max_per_ip,
            window_seconds=state.settings.register_window_seconds,
        )
        session = await service.register(
            pool=state.pool,
            mongo=state.mongo,
            settings=state.settings,
            body=body,
            device=_device(request),
            client_ip=_client_ip(request),
        )
        return ok(session)


@router.post("/login")
async def login(body: LoginRequest, request: Request, state: StateDep) -> Envelope[SessionOut]:
    session = await service.login(
        pool=state.pool,
        redis=state.redis,
        mongo=state.mongo,
        settings=state.settings,
        body=body,
        device=_device(request),
        client_ip=_client_ip(request),
    )
    return ok(session)


@router.post("/refresh")
async def refresh(body: RefreshRequest, request: Request, state: StateDep) -> Envelope[TokensOut]:
    pair = await service.refresh(
        pool=state.pool,
        redis=state.redis,
        mongo=state.mongo,
        settings=state.settings,
        refresh_token=body.refresh_token,
        client_ip=_client_ip(request),
    )
    return ok(pair)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def logout(body: RefreshRequest, state: StateDep) -> None:
    # Ends the session's access tokens too, at once (api/auth/service.authenticate).
    await service.logout(
        pool=state.pool,
        redis=state.redis,
        mongo=state.mongo,
        settings=state.settings,
        refresh_token=body.refresh_token,
    )


@router.get("/me")
async def me(caller: SignedIn) -> Envelope[MeOut]:
    return ok(await service.describe(pool=caller.pool, user=caller.user))
