"""Who has a live socket: a sorted set per user, `tulifo:presence:<user id>`, of connection ids
scored by when they stop counting.

Each socket's heartbeat pushes its score forward (api/realtime/router.py); a socket that closes
removes itself. A socket of an API process that died is not removed, but its score runs out after
`PRESENCE_TTL_BEATS` heartbeats, and the key itself expires when no socket refreshes it. Counting
members whose score is still ahead tells online from offline without trusting any cleanup.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Final

import redis.asyncio as aioredis

KEY_PREFIX: Final = "tulifo:presence"
# A live socket beats every heartbeat; three missed beats (a stalled process) and it is offline.
PRESENCE_TTL_BEATS: Final = 3


def presence_key(user_id: uuid.UUID | str) -> str:
    return f"{KEY_PREFIX}:{user_id}"


async def refresh(
    redis: aioredis.Redis, *, user_id: uuid.UUID, connection_id: str, heartbeat_s: float
) -> None:
    """Count `connection_id` as live for the next few heartbeats."""
    ttl = heartbeat_s * PRESENCE_TTL_BEATS
    key = presence_key(user_id)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zadd(key, {connection_id: time.time() + ttl})
        pipe.expire(key, max(1, int(ttl) + 1))
        await pipe.execute()


async def remove(redis: aioredis.Redis, *, user_id: uuid.UUID, connection_id: str) -> None:
    await redis.zrem(presence_key(user_id), connection_id)


async def online(redis: aioredis.Redis, user_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Which of `user_ids` have at least one live socket now."""
    if not user_ids:
        return set()
    now = time.time()
    async with redis.pipeline(transaction=False) as pipe:
        for user_id in user_ids:
            pipe.zcount(presence_key(user_id), now, "+inf")
        counts = await pipe.execute()
    return {user_id for user_id, count in zip(user_ids, counts, strict=True) if count}
