"""The Redis deny-list of revoked sessions, for the connections that outlive a request.

An access token is a signed statement, valid until it expires (15 minutes). A request's token is
checked against PostgreSQL (api/auth/service.authenticate: its session's family must be there and
unrevoked), so a revocation reaches requests the moment it commits. A WebSocket (api/realtime) or
a dashboard stream (api/dashboard/hub.py) was checked once, when it opened; it keeps watching
`tulifo:session:revoked:<sid>`, which a revocation sets for the access-token lifetime. After the
TTL every access token of the session has expired on its own, so the key can go.

Redis unreachable: setting the key fails the revocation (503) after PostgreSQL committed it; the
client's retry sets it again, so open sockets are closed in the end, and requests never wait for it.
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
