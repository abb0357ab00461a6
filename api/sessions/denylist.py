"""The Redis deny-list of revoked sessions, checked by every authenticated request.

An access token is a signed statement, valid until it expires (15 minutes): revoking its session
in PostgreSQL stops the refresh token, not the access tokens already handed out. So a revocation
also sets `tulifo:session:revoked:<sid>` for the access-token lifetime, and `authenticate` refuses
any token whose `sid` has the key: one EXISTS per request. After the TTL every access token of the
session has expired on its own and the refresh token is refused by PostgreSQL, so the key can go.

Redis unreachable: the check fails closed (503), as login throttling does (api/auth/rate_limit.py).
Letting requests through would let a revoked session, maybe a stolen one, act for 15 minutes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from api.errors import ServiceUnavailable

KEY_PREFIX = "tulifo:session:revoked"


def revoked_key(session_id: uuid.UUID) -> str:
    return f"{KEY_PREFIX}:{session_id}"


async def is_revoked(redis: aioredis.Redis, session_id: uuid.UUID) -> bool:
    """Whether `session_id` was revoked within the access-token lifetime."""
    try:
        found = await redis.exists(revoked_key(session_id))
    except RedisError as exc:
        raise ServiceUnavailable(
            "authentication is unavailable right now; try again shortly"
        ) from exc
    return bool(found)


async def deny(
    redis: aioredis.Redis, session_ids: Iterable[uuid.UUID], *, reason: str, ttl_seconds: int
) -> None:
    """Refuse the access tokens of `session_ids` from now on, in one round trip."""
    ids = list(session_ids)
    if not ids:
        return
    try:
        # No MULTI: each SET stands on its own, and a retry after a failure sets them all again.
        async with redis.pipeline(transaction=False) as pipe:
            for session_id in ids:
                pipe.set(revoked_key(session_id), reason, ex=ttl_seconds)
            await pipe.execute()
    except RedisError as exc:
        raise ServiceUnavailable("sessions cannot be revoked right now; try again shortly") from exc
