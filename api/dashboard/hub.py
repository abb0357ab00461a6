"""One Redis pub/sub subscription per API process, shared by every open dashboard stream.

The live agent (agents/live.py) publishes each update on the channels of the users it is for
and on the admins' channel. This process subscribes once, to the pattern of every user channel
and to the admins' channel, and hands each message to the streams registered for that channel.
A pattern rather than one SUBSCRIBE per open page: a stream is registered the moment it asks,
with no subscription of its own to wait for, so nothing published after its snapshot was read
can slip between the two; the cost is that each process decodes every dashboard message, a
few per user action.

A stream ends (with the reason, so the page reconnects and reloads its snapshot) when:
- its session is revoked: one MGET per second over every open stream's deny-list key
  (api/sessions/denylist.py), not one request per stream;
- its access token expires (the page signs in again or refreshes first);
- the subscription broke (Redis restarted or unreachable): the feed had a gap, and a page
  showing values that missed an update must reload them;
- it fell behind by `MAX_PENDING` messages (a stuck client), or the process shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson
import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from api.errors import ServiceUnavailable
from api.sessions.denylist import revoked_key
from api.state import app_state
from infrastructure.tasks import stop_task
from streams.topics import DASHBOARD_ADMIN_CHANNEL as ADMIN_CHANNEL
from streams.topics import DASHBOARD_USER_CHANNEL_PREFIX

log = logging.getLogger(__name__)

USER_PATTERN: Final = f"{DASHBOARD_USER_CHANNEL_PREFIX}*"
# How often open streams are checked against the deny-list and their tokens' expiry: a revoked
# session's page goes dark within about this long.
SWEEP_INTERVAL_S: Final = 1.0
# A request waits this long for the subscription before it is told to come back (503).
READY_TIMEOUT_S: Final = 5.0
# Messages waiting for one slow stream before it is ended: far more than a page gets in the
# seconds a healthy connection may stall.
MAX_PENDING: Final = 500
RETRY_FIRST_S: Final = 0.5
RETRY_MAX_S: Final = 10.0


@dataclass(frozen=True)
class End:
    """Why a stream ends: revoked, expired, disconnected, lagging or shutdown."""

    reason: str


class Subscriber:
    """One open stream: the channels it may read and what is waiting for it."""

    def __init__(
        self,
        *,
        channels: Iterable[str],
        session_id: uuid.UUID | None,
        expires_at: datetime | None,
    ) -> None:
        self.channels = frozenset(channels)
        self.session_id = session_id
        self.expires_at = expires_at
        # SSE frames, then an `End` last. Unbounded, but `offer` ends the stream at MAX_PENDING.
        self.queue: asyncio.Queue[str | End] = asyncio.Queue()
        self.ended: str | None = None

    def offer(self, frame: str) -> None:
        if self.ended is not None:
            return
        if self.queue.qsize() >= MAX_PENDING:
            self.end("lagging")
            return
        self.queue.put_nowait(frame)

    def end(self, reason: str) -> None:
        if self.ended is None:
            self.ended = reason
            self.queue.put_nowait(End(reason))


def sse_frame(event: str, data: Any, *, event_id: str | None = None) -> str:
    """One Server-Sent Event. `data` is written as one line of JSON (orjson writes no newline),
    so it needs no splitting into several `data:` lines."""
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {orjson.dumps(data).decode()}\n\n"


def frame_of(raw: str | bytes) -> str | None:
    """The SSE frame of a message the live agent published; None (logged) for anything else."""
    try:
        message = orjson.loads(raw)
        kind, message_id = message["type"], message["id"]
        if (
            not isinstance(kind, str)
            or not isinstance(message_id, str)
            or "\n" in kind + message_id
        ):
            raise ValueError("type and id must be one-line strings")
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        log.warning("dashboard message dropped: %s", exc)
        return None
    return sse_frame(kind, message, event_id=message_id)


class DashboardHub:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._by_channel: dict[str, set[Subscriber]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        # The subscription's own connection (one per process), while there is one.
        self._pubsub: PubSub | None = None
        self._ready = asyncio.Event()
        self._closed = False

    @property
    def subscribers(self) -> int:
        return len({sub for subs in self._by_channel.values() for sub in subs})

    async def open(
        self,
        *,
        channels: Iterable[str],
        session_id: uuid.UUID | None,
        expires_at: datetime | None,
    ) -> Subscriber:
        """A registered stream, once the subscription is live; 503 while Redis is not."""
        if self._closed:
            raise ServiceUnavailable("the server is shutting down; try again shortly")
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="dashboard-hub")
        try:
            await asyncio.wait_for(self._ready.wait(), READY_TIMEOUT_S)
        except TimeoutError as exc:
            raise ServiceUnavailable(
                "live updates are unavailable right now; try again shortly",
                headers={"Retry-After": "5"},
            ) from exc
        subscriber = Subscriber(channels=channels, session_id=session_id, expires_at=expires_at)
        for channel in subscriber.channels:
            self._by_channel[channel].add(subscriber)
        return subscriber

    def leave(self, subscriber: Subscriber) -> None:
        for channel in subscriber.channels:
            subs = self._by_channel.get(channel)
            if subs is not None:
                subs.discard(subscriber)
                if not subs:
                    del self._by_channel[channel]

    def _end_all(self, reason: str) -> None:
        for subs in list(self._by_channel.values()):
            for subscriber in list(subs):
                subscriber.end(reason)
                self.leave(subscriber)

    def _deliver(self, channel: str, raw: str | bytes) -> None:
        subs = self._by_channel.get(channel)
        if not subs:
            return
        frame = frame_of(raw)
        if frame is None:
            return
        for subscriber in list(subs):
            subscriber.offer(frame)
            if subscriber.ended is not None:
                self.leave(subscriber)

    async def _sweep(self, now: datetime) -> None:
        """End the streams whose session was revoked or whose token expired."""
        live = {sub for subs in self._by_channel.values() for sub in subs}
        for subscriber in [s for s in live if s.expires_at is not None and s.expires_at <= now]:
            subscriber.end("expired")
            self.leave(subscriber)
            live.discard(subscriber)
        sessions = sorted({s.session_id for s in live if s.session_id is not None}, key=str)
        if not sessions:
            return
        found = await self._redis.mget([revoked_key(session) for session in sessions])
        revoked = {session for session, value in zip(sessions, found, strict=True) if value}
        for subscriber in [s for s in live if s.session_id in revoked]:
            subscriber.end("revoked")
            self.leave(subscriber)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while not self._closed:
            pubsub = self._redis.pubsub()
            self._pubsub = pubsub
            try:
                await pubsub.psubscribe(USER_PATTERN)
                await pubsub.subscribe(ADMIN_CHANNEL)
                # Ready once Redis confirmed both: from then on every publish reaches us.
                confirmed = 0
                while confirmed < 2:
                    message = await pubsub.get_message(timeout=READY_TIMEOUT_S)
                    if message is None:
                        raise TimeoutError("no subscription confirmation from Redis")
                    if message["type"] in ("subscribe", "psubscribe"):
                        confirmed += 1
                self._ready.set()
                if failures:
                    log.info("dashboard subscription restored")
                failures = 0
                next_sweep = loop.time() + SWEEP_INTERVAL_S
                while not self._closed:
                    wait = max(0.0, next_sweep - loop.time())
                    message = await pubsub.get_message(timeout=wait)
                    kind = None if message is None else message["type"]
                    if kind in ("message", "pmessage"):
                        assert message is not None
                        self._deliver(str(message["channel"]), message["data"])
                    elif kind in ("subscribe", "psubscribe"):
                        # redis-py reconnected by itself and subscribed again: what was
                        # published in between is lost, so the open streams are behind.
                        log.warning("dashboard subscription was re-established; streams end")
                        self._end_all("disconnected")
                    if loop.time() >= next_sweep:
                        await self._sweep(datetime.now(UTC))
                        next_sweep = loop.time() + SWEEP_INTERVAL_S
            except Exception as exc:
                # Redis errors above all; anything else is a bug, but a dead hub would leave
                # every stream of this process open and deaf (revocations unseen): start over.
                self._ready.clear()
                failures += 1
                delay = min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** min(failures - 1, 10))
                log.warning(
                    "dashboard subscription lost (%s: %s); open streams end, retrying in %.1fs",
                    type(exc).__name__,
                    exc,
                    delay,
                    exc_info=not isinstance(exc, RedisError | OSError | TimeoutError),
                )
                # The feed has a gap: pages reconnect and reload their snapshot.
                self._end_all("disconnected")
                await asyncio.sleep(delay)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        """Stop the subscription and end every stream (application shutdown)."""
        self._closed = True
        self._ready.clear()
        self._end_all("shutdown")
        if self._task is not None:
            await stop_task(self._task)


def hub_of(request: Request) -> DashboardHub:
    """The process's hub, made on the first stream (nothing connects before one is opened)."""
    hub: DashboardHub | None = getattr(request.app.state, "dashboard_hub", None)
    if hub is None:
        hub = DashboardHub(app_state(request).redis)
        request.app.state.dashboard_hub = hub
    return hub


async def close_hub(app: FastAPI) -> None:
    """Shutdown hook (api/app.py lifespan): before the Redis client it uses is closed."""
    hub: DashboardHub | None = getattr(app.state, "dashboard_hub", None)
    if hub is not None:
        await hub.close()
