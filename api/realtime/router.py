"""The live socket: `POST /api/realtime/ticket`, then a WebSocket at `/api/ws?ticket=…`.

Why a ticket: browsers cannot set an Authorization header on a WebSocket, and an access token in
the URL would sit in access logs for its 15 minutes (api/realtime/tickets.py). The ticket is asked
for with the ordinary Bearer token, lives `realtime_ticket_ttl_seconds` (30 s) and opens one socket.
A missing, unknown, expired or reused ticket: the socket is accepted and closed at once with code
4401, before any frame.

Once open, the socket is in its user's room (`user:<id>`), and answers `{"event": "connected"}`.
Chat frames are api/messages/live.py. Every `realtime_heartbeat_seconds` (15 s) the socket
refreshes its presence (api/realtime/presence.py) and is closed with 4401 if its session has been
revoked (api/sessions/denylist.py) or the access token it was opened with has expired: a socket
never outlives what a REST call could do. The client asks for a new ticket and reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

from fastapi import FastAPI, WebSocket
from redis.exceptions import RedisError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from api.auth.dependencies import SignedIn
from api.envelope import Envelope, ok
from api.errors import ServiceUnavailable
from api.messages import live
from api.realtime import presence, tickets
from api.realtime.hub import CLOSE_TOO_SLOW, Connection, Hub
from api.routers import DomainRouter
from api.schemas import ResponseModel
from api.sessions import denylist
from api.state import AppState
from streams.messages import user_room

log = logging.getLogger(__name__)

# 4000-4999 are the application's (RFC 6455 §7.4.2); 4401 reads as HTTP's 401.
CLOSE_UNAUTHORIZED: Final = 4401
CLOSE_UNAVAILABLE: Final = 1011
# A client frame is a small JSON object (typing, join); anything bigger is refused.
MAX_FRAME_CHARS: Final = 4096


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """One hub per API process, over the app's Redis client (api/app.py made it)."""
    state: AppState = app.state.tulifo
    hub = Hub(state.redis)
    await hub.start()
    app.state.tulifo_realtime_hub = hub
    try:
        yield
    finally:
        await hub.stop()


router = DomainRouter(tags=["realtime"], lifespan=_lifespan)


class TicketOut(ResponseModel):
    ticket: str
    # Seconds the ticket may wait before it opens the socket.
    expires_in: int
    # Where to connect, relative to the API's origin (ws:// or wss:// as the page's scheme).
    url: str


@router.post("/realtime/ticket")
async def issue_ticket(caller: SignedIn) -> Envelope[TicketOut]:
    """A one-use ticket for the live socket: connect to `url` within `expiresIn` seconds."""
    # The socket ends with the access token that asked for it (checked on its heartbeat).
    assert caller.user.token_expires_at is not None  # always set for a request's user
    ttl = caller.settings.realtime_ticket_ttl_seconds
    ticket = tickets.Ticket(
        user_id=caller.user.id,
        role=caller.user.role,
        session_id=caller.user.session_id,
        expires_at=caller.user.token_expires_at,
    )
    try:
        value = await tickets.issue(caller.redis, ticket, ttl_seconds=ttl)
    except RedisError as exc:
        raise ServiceUnavailable("live updates are unavailable right now") from exc
    return ok(TicketOut(ticket=value, expires_in=ttl, url=f"/api/ws?ticket={value}"))


@router.websocket("/ws")
async def live_socket(websocket: WebSocket) -> None:
    state: AppState = websocket.app.state.tulifo
    hub: Hub = websocket.app.state.tulifo_realtime_hub
    await websocket.accept()
    try:
        ticket = await tickets.redeem(state.redis, websocket.query_params.get("ticket"))
        revoked = (
            ticket is not None
            and ticket.session_id is not None
            and await state.redis.exists(denylist.revoked_key(ticket.session_id))
        )
    except (RedisError, OSError):
        await websocket.close(CLOSE_UNAVAILABLE, "live updates are unavailable")
        return
    if ticket is None or revoked or ticket.expires_at <= time.time():
        await websocket.close(CLOSE_UNAUTHORIZED, "invalid, expired or used ticket")
        return
    connection = Connection(websocket, user_id=ticket.user_id)
    heartbeat_s = state.settings.realtime_heartbeat_seconds
    try:
        await hub.join(connection, user_room(ticket.user_id))
        await presence.refresh(
            state.redis,
            user_id=ticket.user_id,
            connection_id=connection.id,
            heartbeat_s=heartbeat_s,
        )
    except (TimeoutError, RedisError, OSError):
        await hub.drop(connection)
        await websocket.close(CLOSE_UNAVAILABLE, "live updates are unavailable")
        return
    connection.send(
        {
            "event": "connected",
            "data": {"userId": str(ticket.user_id), "connectionId": connection.id},
        }
    )
    try:
        code, reason = await _serve(connection, hub=hub, state=state, ticket=ticket)
        if code is not None and websocket.client_state is WebSocketState.CONNECTED:
            with contextlib.suppress(RuntimeError, OSError):
                await websocket.close(code, reason)
    finally:
        await hub.drop(connection)
        with contextlib.suppress(RedisError, OSError):
            await presence.remove(state.redis, user_id=ticket.user_id, connection_id=connection.id)


async def _serve(
    connection: Connection, *, hub: Hub, state: AppState, ticket: tickets.Ticket
) -> tuple[int | None, str]:
    """Run the socket until one side ends it; the close code to send (None: the client left)."""
    tasks = {
        asyncio.create_task(_read(connection, hub=hub, state=state)),
        asyncio.create_task(_heartbeat(connection, state=state, ticket=ticket)),
        asyncio.create_task(_write(connection)),
        asyncio.create_task(_too_slow(connection)),
    }
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if not task.cancelled() and task.exception() is None:
            result: tuple[int | None, str] = task.result()
            return result
    return None, ""


async def _write(connection: Connection) -> tuple[int | None, str]:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        await connection.write_forever()
    return None, ""


async def _too_slow(connection: Connection) -> tuple[int | None, str]:
    await connection.too_slow.wait()
    return CLOSE_TOO_SLOW, "too far behind; reconnect and reload"


async def _heartbeat(
    connection: Connection, *, state: AppState, ticket: tickets.Ticket
) -> tuple[int | None, str]:
    heartbeat_s = state.settings.realtime_heartbeat_seconds
    while True:
        await asyncio.sleep(heartbeat_s)
        if ticket.expires_at <= time.time():
            return CLOSE_UNAUTHORIZED, "access token expired"
        try:
            if ticket.session_id is not None and await state.redis.exists(
                denylist.revoked_key(ticket.session_id)
            ):
                return CLOSE_UNAUTHORIZED, "session revoked"
            await presence.refresh(
                state.redis,
                user_id=ticket.user_id,
                connection_id=connection.id,
                heartbeat_s=heartbeat_s,
            )
        except (RedisError, OSError) as exc:
            # Not closed for a Redis hiccup: the next beat checks again, and presence expires
            # on its own if Redis stays away.
            log.warning("realtime heartbeat could not reach Redis: %s", exc)


async def _read(connection: Connection, *, hub: Hub, state: AppState) -> tuple[int | None, str]:
    websocket = connection.websocket
    while True:
        try:
            message = await websocket.receive()
        except (WebSocketDisconnect, RuntimeError):
            return None, ""
        if message["type"] == "websocket.disconnect":
            return None, ""
        event, data, problem = _parse(message.get("text"))
        if problem is not None:
            connection.send(live.error_frame(event, problem))
            continue
        assert event is not None
        try:
            await live.handle(
                event, data, connection=connection, hub=hub, pool=state.pool, redis=state.redis
            )
        except live.FrameError as exc:
            connection.send(live.error_frame(event, exc))


def _parse(text: str | None) -> tuple[str | None, dict[str, Any], live.FrameError | None]:
    if text is None:
        return None, {}, live.FrameError("VALIDATION_ERROR", "frames are JSON text")
    if len(text) > MAX_FRAME_CHARS:
        return (
            None,
            {},
            live.FrameError("VALIDATION_ERROR", f"frames are {MAX_FRAME_CHARS} characters at most"),
        )
    try:
        frame = json.loads(text)
    except ValueError:
        return None, {}, live.FrameError("VALIDATION_ERROR", "frames are JSON text")
    if not isinstance(frame, dict) or not isinstance(frame.get("event"), str):
        return None, {}, live.FrameError("VALIDATION_ERROR", 'a frame is {"event": …, "data": {…}}')
    data = frame.get("data", {})
    if not isinstance(data, dict):
        return frame["event"], {}, live.FrameError("VALIDATION_ERROR", "data: an object")
    return frame["event"], data, None
