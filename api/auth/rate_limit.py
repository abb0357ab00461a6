"""Login throttling in Redis: a fixed window per email and per client IP.

One Lua script counts the attempt under both keys and reads their remaining lifetime, so the
check is atomic across API processes: INCR, then EXPIRE only when the key is new, so later
attempts never push the window further out. A fixed window lets a burst of up to twice the limit
through across a window boundary; for login throttling that is an acceptable price for one
round trip and two small keys (a sliding log would keep one entry per attempt).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from api.errors import ServiceUnavailable, TooManyRequests

log = logging.getLogger(__name__)

KEY_PREFIX = "tulifo:login"

# KEYS: counters to bump. ARGV[1]: window in seconds. Returns [count, ttl] per key.
_COUNT_ATTEMPT = """
local out = {}
for i, key in ipairs(KEYS) do
    local count = redis.call('INCR', key)
    local ttl = redis.call('TTL', key)
    if count == 1 or ttl < 0 then
        redis.call('EXPIRE', key, ARGV[1])
        ttl = tonumber(ARGV[1])
    end
    out[#out + 1] = count
    out[#out + 1] = ttl
end
return out
"""


@dataclass(frozen=True)
class LoginLimits:
    max_per_email: int
    max_per_ip: int
    window_seconds: int


def email_key(email: str) -> str:
    # Hashed: the key space should not be a list of every address anyone tried.
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()
    return f"{KEY_PREFIX}:email:{digest}"


def ip_key(ip: str) -> str:
    return f"{KEY_PREFIX}:ip:{ip}"


async def _count(
    redis: aioredis.Redis, *, limits: dict[str, int], window_seconds: int, refused: str
) -> None:
    """Count one attempt under each key; raise TooManyRequests once any key passes its limit.

    `limits` maps a counter key to its maximum within the window; Retry-After is the wait until
    the longest-blocked counter frees up.
    """
    try:
        # The script object runs EVALSHA, falling back to EVAL the first time.
        script = redis.register_script(_COUNT_ATTEMPT)
        result: Any = await script(keys=list(limits), args=[window_seconds])
    except RedisError as exc:
        # Fail closed: without the counter, the endpoint would be open to unlimited attempts.
        raise ServiceUnavailable(f"{refused} is unavailable right now; try again shortly") from exc
    values = [int(v) for v in result]
    waits = [
        ttl
        for (count, ttl), maximum in zip(
            zip(values[::2], values[1::2], strict=True), limits.values(), strict=True
        )
        if count > maximum
    ]
    if waits:
        retry_after = max(1, *waits)
        raise TooManyRequests(
            f"too many {refused} attempts; try again in {retry_after} seconds",
            retry_after=retry_after,
        )


async def count_login_attempt(
    redis: aioredis.Redis, *, email: str, ip: str, limits: LoginLimits
) -> None:
    """Count one sign-in attempt, per email and per client IP."""
    await _count(
        redis,
        limits={email_key(email): limits.max_per_email, ip_key(ip): limits.max_per_ip},
        window_seconds=limits.window_seconds,
        refused="login",
    )


async def count_registration(
    redis: aioredis.Redis, *, ip: str, max_per_ip: int, window_seconds: int
) -> None:
    """Count one registration per client IP: each costs a bcrypt hash, so it is a DoS lever."""
    await _count(
        redis,
        limits={f"{KEY_PREFIX}:register:{ip}": max_per_ip},
        window_seconds=window_seconds,
        refused="registration",
    )


async def clear_email_attempts(redis: aioredis.Redis, *, email: str) -> None:
    """Forget the failed attempts on an email once its owner signs in."""
    try:
        await redis.delete(email_key(email))
    except RedisError:
        # The owner is already authenticated; a stale counter only expires with its window.
        log.warning("could not clear the login counter of an email", exc_info=True)
