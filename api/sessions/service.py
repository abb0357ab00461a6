"""Sessions: opened at sign-in, noted at each refresh, listed, and revoked.

A session is one refresh-token family. Three stores hold a part of it each:
- PostgreSQL `refresh_token_families` decides whether it is live (its refresh and access tokens
  work);
- MongoDB `sessions` describes it: device, address, times (tables/sessions.py);
- Redis carries a revocation to the session's open sockets and streams (denylist.py).

A revocation commits in PostgreSQL first (from then on no request passes with the session's
access tokens), then sets the deny-list key, then stamps the MongoDB document. The deny-list step
fails the request (503) when Redis is down, and a retry does it again, so the outcome converges.
MongoDB writes are best effort: the listing takes its sessions from PostgreSQL, so a missed write
costs a session its device name, never its revocation.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from collections.abc import Awaitable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
import redis.asyncio as aioredis
from pymongo.errors import PyMongoError

from api.auth import repository
from api.errors import NotFound
from api.sessions import denylist
from api.sessions.devices import Device, parse_user_agent
from api.sessions.schemas import DeviceOut, SessionItem
from infrastructure.database import unit_of_work
from infrastructure.mongo import MongoDatabase
from infrastructure.settings import Settings
from tables import sessions as store

log = logging.getLogger(__name__)
T = TypeVar("T")

# PostgreSQL's check allows 'reuse' | 'logout': ending a session from the list is a sign-out done
# from another device. MongoDB keeps the finer reason (`revokedReason`).
FAMILY_REVOKED_REASON = "logout"
# Enough for anyone's real devices; a script signing in in a loop sees its newest hundred.
MAX_LISTED = 100

# A session's MongoDB document is description, not authority: with MongoDB down, a sign-in waits
# this long for it (not the client's 5 s server selection) and goes on without it.
BEST_EFFORT_S = 1.0

# The databases whose indexes this process has made sure of (the API has no per-domain startup).
_indexed: weakref.WeakSet[MongoDatabase] = weakref.WeakSet()


async def open_session(
    *,
    mongo: MongoDatabase,
    settings: Settings,
    session_id: uuid.UUID,
    user_id: uuid.UUID,
    device: Device,
    ip: str,
) -> None:
    """Record the device and address of a session just started (best effort)."""
    now = datetime.now(UTC)

    async def record() -> None:
        if mongo not in _indexed:
            await store.ensure_indexes(mongo)
            _indexed.add(mongo)
        await store.open_session(
            mongo,
            session_id=str(session_id),
            user_id=str(user_id),
            device=device.as_document(),
            ip=ip,
            now=now,
            expires_at=now + timedelta(seconds=settings.refresh_token_ttl_seconds),
        )

    # The sign-in stands without it: the session is live in PostgreSQL, listed without a device.
    await _best_effort(record(), "could not record a new session", session_id=str(session_id))


async def note_refresh(
    *, mongo: MongoDatabase, settings: Settings, session_id: uuid.UUID, ip: str
) -> None:
    """Move the session's last use to now (best effort)."""
    now = datetime.now(UTC)
    touch = store.touch_session(
        mongo,
        session_id=str(session_id),
        ip=ip,
        now=now,
        expires_at=now + timedelta(seconds=settings.refresh_token_ttl_seconds),
    )
    await _best_effort(touch, "could not note a session's use", session_id=str(session_id))


async def list_sessions(
    *, pool: asyncpg.Pool, mongo: MongoDatabase, user_id: uuid.UUID, current: uuid.UUID | None
) -> list[SessionItem]:
    """The user's live sessions, most recently used first."""
    async with pool.acquire() as conn:
        families = await repository.live_families(conn, user_id=user_id, limit=MAX_LISTED)
    found = await _best_effort(
        store.find_sessions(mongo, session_ids=[str(f["id"]) for f in families]),
        "could not read session documents",
        user_id=str(user_id),
    )
    documents = found or {}
    return [_item(family, documents.get(str(family["id"])), current) for family in families]


async def revoke_session(
    *,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    mongo: MongoDatabase,
    settings: Settings,
    user_id: uuid.UUID,
    session_id: uuid.UUID,
) -> None:
    """End one of the user's sessions; NotFound for another user's or an unknown one.

    Ending an already ended session succeeds again, so a retry after a 503 finishes the job."""
    async with unit_of_work(pool) as conn:
        family = await repository.find_family(conn, family_id=session_id, user_id=user_id)
        if family is None:
            raise NotFound("no such session")
        await repository.revoke_family(
            conn, family_id=session_id, user_id=user_id, reason=FAMILY_REVOKED_REASON
        )
    await end_sessions(
        redis=redis, mongo=mongo, settings=settings, session_ids=[session_id], reason="revoked"
    )


async def revoke_all_sessions(
    *,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    mongo: MongoDatabase,
    settings: Settings,
    user_id: uuid.UUID,
    keep: uuid.UUID | None,
) -> int:
    """End every session of the user but `keep`; returns how many were live."""
    async with unit_of_work(pool) as conn:
        revoked = await repository.revoke_user_families(
            conn, user_id=user_id, keep=keep, reason=FAMILY_REVOKED_REASON
        )
        # Every family ended within an access-token lifetime, not only this call's: after a 503
        # the retry finds nothing left to revoke, yet must still deny what the first call ended.
        recent = await repository.families_revoked_within(
            conn, user_id=user_id, seconds=settings.access_token_ttl_seconds
        )
    await end_sessions(
        redis=redis, mongo=mongo, settings=settings, session_ids=recent, reason="revoked_all"
    )
    return revoked


async def end_sessions(
    *,
    redis: aioredis.Redis,
    mongo: MongoDatabase,
    settings: Settings,
    session_ids: Iterable[uuid.UUID],
    reason: str,
) -> None:
    """Carry revocations committed in PostgreSQL to access tokens (at once) and the record."""
    ids = list(session_ids)
    await denylist.deny(redis, ids, reason=reason, ttl_seconds=settings.access_token_ttl_seconds)
    await _best_effort(
        store.mark_revoked(
            mongo, session_ids=[str(i) for i in ids], now=datetime.now(UTC), reason=reason
        ),
        "could not stamp revoked sessions",
        reason=reason,
    )


async def _best_effort(step: Awaitable[T], warning: str, **extra: str) -> T | None:
    """`step`'s result, or None (and a warning) when MongoDB fails or does not answer within
    BEST_EFFORT_S."""
    try:
        async with asyncio.timeout(BEST_EFFORT_S):
            return await step
    except (PyMongoError, TimeoutError):
        log.warning(warning, extra=extra)
        return None


def _item(
    family: asyncpg.Record, document: dict[str, Any] | None, current: uuid.UUID | None
) -> SessionItem:
    device = parse_user_agent(None).as_document()
    ip = None
    last_used_at: datetime = family["rotated_at"]
    if document is not None:
        device = document.get("device") or device
        ip = document.get("ip")
        # The same moment as the family's rotation, unless that write was missed.
        last_used_at = max(last_used_at, document.get("lastUsedAt") or last_used_at)
    return SessionItem(
        id=family["id"],
        current=family["id"] == current,
        device=_device_out(device),
        ip=ip,
        created_at=family["created_at"],
        last_used_at=last_used_at,
        expires_at=family["expires_at"],
    )


def _device_out(device: dict[str, Any]) -> DeviceOut:
    # Field by field: a document written by a later version may hold more than we show.
    return DeviceOut(
        label=device.get("label") or "Unknown device",
        browser=device.get("browser"),
        os=device.get("os"),
        kind=device.get("kind") or "other",
        user_agent=device.get("userAgent") or "",
    )
