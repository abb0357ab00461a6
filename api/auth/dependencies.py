"""Who is calling, as route dependencies.

- `CurrentUser`: the signed-in user, for a route that needs nothing else.
- `SignedIn` (and `signed_in(...)` for roles): a `Caller`, the signed-in user with the process's
  pool, clients and settings, for a route that needs both.
- `Viewing`: a `Visitor`, the same for a route the public may read too (user None).

Why one dependency for the user and the pool: FastAPI solves each dependency of a route at a cost
of its own, ~70k instructions in process (a twentieth of a whole profile write), however trivial
the function behind it. A route asking for the user, the pool and a client separately paid three
times for what one attribute read of the app state hands out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import asyncpg
import redis.asyncio as aioredis
from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from api.auth import service
from api.auth.schemas import AuthenticatedUser
from api.errors import Forbidden, Unauthorized
from api.state import AppState, app_state
from infrastructure.mongo import MongoDatabase
from infrastructure.settings import Settings


@dataclass(frozen=True, slots=True)
class _Served:
    """What the process holds for serving a request: the pool, its clients, its settings."""

    state: AppState

    @property
    def pool(self) -> asyncpg.Pool:
        return self.state.pool

    @property
    def redis(self) -> aioredis.Redis:
        return self.state.redis

    @property
    def mongo(self) -> MongoDatabase:
        return self.state.mongo

    @property
    def settings(self) -> Settings:
        return self.state.settings


@dataclass(frozen=True, slots=True)
class Caller(_Served):
    """A signed-in user, and what the process holds for serving them."""

    user: AuthenticatedUser


@dataclass(frozen=True, slots=True)
class Visitor(_Served):
    """Whoever reads a public route: a signed-in user, or None for the public."""

    user: AuthenticatedUser | None


def _bearer_token(request: Request) -> str | None:
    scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


async def _authenticate(state: AppState, token: str) -> AuthenticatedUser:
    return await service.authenticate(pool=state.pool, settings=state.settings, token=token)


class SignedInScheme(HTTPBearer):
    """The Bearer scheme (so OpenAPI shows it) for routes that require a signed-in user, holding
    one of `roles` when any are named. api/openapi.py documents 401 and 403 for its routes."""

    def __init__(self, *roles: str) -> None:
        super().__init__(
            scheme_name="HTTPBearer",
            description="Access token from /api/auth/login",
            auto_error=False,
        )
        self.roles = roles

    async def _user(self, request: Request, state: AppState) -> AuthenticatedUser:
        token = _bearer_token(request)
        # A missing or non-Bearer header is our 401 envelope, not FastAPI's 403.
        if token is None:
            raise Unauthorized("authentication required")
        user = await _authenticate(state, token)
        if self.roles and user.role not in self.roles:
            raise Forbidden(f"requires role {' or '.join(self.roles)}")
        return user


class BearerUser(SignedInScheme):
    """Answers with the signed-in user itself."""

    async def __call__(self, request: Request) -> AuthenticatedUser:  # type: ignore[override]
        return await self._user(request, app_state(request))


class BearerCaller(SignedInScheme):
    """Answers with a `Caller`: the user and the app state in one dependency."""

    async def __call__(self, request: Request) -> Caller:  # type: ignore[override]
        state = app_state(request)
        return Caller(state, await self._user(request, state))


class BearerVisitor(HTTPBearer):
    """A `Visitor`: the signed-in user, or None for the public where the public may read too."""

    async def __call__(self, request: Request) -> Visitor:  # type: ignore[override]
        state = app_state(request)
        token = _bearer_token(request)
        # No token: the public. A bad token is still a 401, never silently public.
        return Visitor(state, None if token is None else await _authenticate(state, token))


def signed_in(*roles: str) -> BearerCaller:
    """A `Caller` dependency for signed-in users holding one of `roles` (403 otherwise)."""
    return BearerCaller(*roles)


get_current_user = BearerUser()
CurrentUser = Annotated[AuthenticatedUser, Depends(get_current_user)]
SignedIn = Annotated[Caller, Depends(signed_in())]
Admin = Annotated[Caller, Depends(signed_in("admin"))]
Viewing = Annotated[Visitor, Depends(BearerVisitor(scheme_name="HTTPBearer", auto_error=False))]
