"""The rooms of one API process, fed by one Redis pub/sub connection.

Every room (`user:<id>`, `conversation:<id>`; streams/messages.py) is a channel under
`tulifo:chat:`. The hub subscribes to a room's channel when its first local socket joins and
unsubscribes when the last one leaves, all on one pub/sub connection per process: sockets never
hold Redis connections of their own. A frame published on a channel (tables/messages.py
`publish`, by the messages agent or by any API process) reaches every local socket in that room.

A join returns once Redis has confirmed the subscription, so whatever is published after a client
saw its join acknowledged reaches it.

Each socket has a bounded outbox drained by its own writer: a slow client never holds the hub's
reader back. One that falls `OUTBOX_FRAMES` behind is closed (it reloads the history when it
reconnects) rather than buffered without end. Pub/sub delivers at most once: a frame published
while Redis is unreachable is lost to live delivery, never to the history in MongoDB.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import Any, Final

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from starlette.websockets import WebSocket

from infrastructure.tasks import stop_task
from streams.messages import CHANNEL_PREFIX, room_channel

log = logging.getLogger(__name__)

OUTBOX_FRAMES: Final = 256
# How long a join waits for Redis to confirm the subscription before it is refused.
SUBSCRIBE_TIMEOUT_S: Final = 5.0
# The reader's pause after losing Redis, doubling to the cap; redis-py reconnects and subscribes
# the hub's channels again on its next read.
READ_RETRY_FIRST_S: Final = 0.2
READ_RETRY_MAX_S: Final = 5.0
# Close code for a socket whose outbox overflowed (RFC 6455 1013: try again later).
CLOSE_TOO_SLOW: Final = 1013


class Connection:
    """One socket: who it is, the rooms it is in, and its outbox."""

    def __init__(self, websocket: WebSocket, *, user_id: uuid.UUID) -> None:
        self.websocket = websocket
        self.user_id = user_id
        self.id = uuid.uuid4().hex
        self.rooms: set[str] = set()
        self._outbox: asyncio.Queue[str] = asyncio.Queue(OUTBOX_FRAMES)
        # Set when the outbox overflowed: the socket's session closes it.
        self.too_slow = asyncio.Event()

    def offer(self, text: str) -> None:
        try:
            self._outbox.put_nowait(text)
        except asyncio.QueueFull:
            self.too_slow.set()

    def send(self, frame: dict[str, Any]) -> None:
        self.offer(json.dumps(frame, separators=(",", ":")))

    async def write_forever(self) -> None:
        """Send the outbox in order; returns only by cancellation or a closed socket."""
        while True:
            text = await self._outbox.get()
            await self.websocket.send_text(text)


class Hub:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._rooms: dict[str, set[Connection]] = {}
        # Per subscribed channel: done once Redis confirmed the subscription.
        self._confirmed: dict[str, asyncio.Future[None]] = {}
        self._lock = asyncio.Lock()
        # A channel of this process alone keeps the connection subscribed (a pub/sub connection
        # with no channel cannot be read from).
        self._own_channel = f"{CHANNEL_PREFIX}hub:{uuid.uuid4().hex}"
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        """Start reading; Redis need not be up yet (the reader subscribes once it is)."""
        self._pubsub = self._redis.pubsub()
        self._reader = asyncio.create_task(self._read_forever(), name="realtime-hub")

    async def stop(self) -> None:
        self._stopping = True
        if self._reader is not None:
            await stop_task(self._reader)
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()

    def local_rooms(self) -> dict[str, int]:
        """Room -> local sockets in it (for tests and metrics)."""
        return {room: len(members) for room, members in self._rooms.items()}

    async def join(self, connection: Connection, room: str) -> None:
        """Put `connection` in `room`; returns once the room's channel is subscribed."""
        channel = room_channel(room)
        async with self._lock:
            members = self._rooms.setdefault(room, set())
            members.add(connection)
            connection.rooms.add(room)
            confirmed = self._confirmed.get(channel)
            if confirmed is None:
                confirmed = asyncio.get_running_loop().create_future()
                self._confirmed[channel] = confirmed
                await self._pubsub.subscribe(channel)
        await asyncio.wait_for(asyncio.shield(confirmed), SUBSCRIBE_TIMEOUT_S)

    async def leave(self, connection: Connection, room: str) -> None:
        async with self._lock:
            connection.rooms.discard(room)
            members = self._rooms.get(room)
            if members is None:
                return
            members.discard(connection)
            if members:
                return
            del self._rooms[room]
            channel = room_channel(room)
            self._confirmed.pop(channel, None)
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.unsubscribe(channel)

    async def drop(self, connection: Connection) -> None:
        """Take a closing socket out of every room."""
        for room in list(connection.rooms):
            await self.leave(connection, room)

    def deliver(self, channel: str, text: str) -> None:
        """Hand one published frame to the local sockets of its room."""
        if not channel.startswith(CHANNEL_PREFIX):
            return
        members = self._rooms.get(channel[len(CHANNEL_PREFIX) :])
        if not members:
            return
        try:
            frame = json.loads(text)
            excluded = frame.pop("excludeUserId", None)
            out = json.dumps(frame, separators=(",", ":"))
        except (ValueError, AttributeError):
            log.warning("ignoring a frame that is not a JSON object on %s", channel)
            return
        for connection in list(members):
            if excluded is None or str(connection.user_id) != excluded:
                connection.offer(out)

    async def _read_forever(self) -> None:
        failures = 0
        subscribed = False
        while not self._stopping:
            try:
                if not subscribed:
                    async with self._lock:
                        await self._pubsub.subscribe(self._own_channel)
                    subscribed = True
                message = await self._pubsub.get_message(timeout=1.0)
            except (RedisError, OSError) as exc:
                failures += 1
                delay = min(READ_RETRY_MAX_S, READ_RETRY_FIRST_S * 2 ** min(failures, 10))
                log.warning("realtime hub lost Redis (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                continue
            failures = 0
            if message is None:
                continue
            channel = _text(message.get("channel"))
            kind = message.get("type")
            if kind == "subscribe":
                confirmed = self._confirmed.get(channel)
                if confirmed is not None and not confirmed.done():
                    confirmed.set_result(None)
            elif kind == "message":
                self.deliver(channel, _text(message.get("data")))


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)
