"""Who is calling: `CurrentUser` for any signed-in user, `require_role(...)` to narrow it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from api.auth import service
from api.auth.schemas import AuthenticatedUser
from api.errors import Forbidden, Unauthorized
from api.state import app_state


def _bearer_token(request: Request) -> str | None:
    scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


async def _authenticate(request: Request, token: str) -> AuthenticatedUser:
    state = app_state(request)
    return await service.authenticate(pool=state.pool, settings=state.settings, token=token)


class BearerUser(HTTPBearer):
    """The Bearer scheme (so OpenAPI shows it) that answers with the signed-in user itself.

    One dependency instead of a credentials dependency under a user one, with the app state read
    straight from the request: every signed-in request comes through here, and FastAPI solves
    each dependency at a cost of its own."""

    async def __call__(self, request: Request) -> AuthenticatedUser:  # type: ignore[override]
        token = _bearer_token(request)
        # A missing or non-Bearer header is our 401 envelope, not FastAPI's 403.
        if token is None:
            raise Unauthorized("authentication required")
        return await _authenticate(request, token)


class OptionalBearerUser(HTTPBearer):
    """The signed-in user, or None for the public where the public may read too."""

    async def __call__(self, request: Request) -> AuthenticatedUser | None:  # type: ignore[override]
        token = _bearer_token(request)
        # No token: the public. A bad token is still a 401, never silently public.
        return None if token is None else await _authenticate(request, token)


get_current_user = BearerUser(
    scheme_name="HTTPBearer", description="Access token from /api/auth/login", auto_error=False
)

CurrentUser = Annotated[AuthenticatedUser, Depends(get_current_user)]
get_optional_user = OptionalBearerUser(scheme_name="HTTPBearer", auto_error=False)
OptionalUser = Annotated[AuthenticatedUser | None, Depends(get_optional_user)]


def require_role(*roles: str) -> Callable[[AuthenticatedUser], Awaitable[AuthenticatedUser]]:
    """A dependency that lets through only users holding one of `roles` (403 otherwise)."""

    async def check(user: CurrentUser) -> AuthenticatedUser:
        if user.role not in roles:
            raise Forbidden(f"requires role {' or '.join(roles)}")
        return user

    return check


AdminUser = Annotated[AuthenticatedUser, Depends(require_role("admin"))]
