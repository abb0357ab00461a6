"""Who is calling: `CurrentUser` for any signed-in user, `require_role(...)` to narrow it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import service
from api.auth.schemas import AuthenticatedUser
from api.errors import Forbidden, Unauthorized
from api.state import app_state

# auto_error=False: a missing or non-Bearer header becomes our 401 envelope, not FastAPI's 403.
_bearer = HTTPBearer(auto_error=False, description="Access token from /api/auth/login")


async def get_current_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> AuthenticatedUser:
    if credentials is None or not credentials.credentials:
        raise Unauthorized("authentication required")
    # The state straight from the request, not as three more dependencies: every signed-in
    # request comes through here, and FastAPI solves each dependency at a cost of its own.
    state = app_state(request)
    return await service.authenticate(
        pool=state.pool, redis=state.redis, settings=state.settings, token=credentials.credentials
    )


CurrentUser = Annotated[AuthenticatedUser, Depends(get_current_user)]


def require_role(*roles: str) -> Callable[[AuthenticatedUser], Awaitable[AuthenticatedUser]]:
    """A dependency that lets through only users holding one of `roles` (403 otherwise)."""

    async def check(user: CurrentUser) -> AuthenticatedUser:
        if user.role not in roles:
            raise Forbidden(f"requires role {' or '.join(roles)}")
        return user

    return check


AdminUser = Annotated[AuthenticatedUser, Depends(require_role("admin"))]
