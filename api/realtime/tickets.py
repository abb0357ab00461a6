"""One-use tickets that open a WebSocket.

A browser cannot set an Authorization header on a WebSocket, and a token in the URL ends up in
proxy and server logs, where it stays valid for its 15 minutes. So a signed-in page first asks
`POST /api/realtime/ticket` (an ordinary Bearer request) for a ticket, then connects to
`/api/ws?ticket=…` within `realtime_ticket_ttl_seconds`. The ticket is 32 random bytes kept in
Redis with the caller's user, session and token expiry; the socket takes it with GETDEL, so it
opens one socket at most, and a logged URL is worth nothing a few seconds later.
"""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass
from typing import Final

import redis.asyncio as aioredis

KEY_PREFIX: Final = "tulifo:realtime:ticket"
# base64url of 32 bytes is 43 characters; anything longer is not one of ours.
MAX_TICKET_CHARS: Final = 64


@dataclass(frozen=True)
class Ticket:
    user_id: uuid.UUID
    role: str
    # The session the ticket was asked for in: revoking it closes the socket.
    session_id: uuid.UUID | None
    # When the access token that asked for it expires (Unix seconds): the socket closes then.
    expires_at: int


def _key(ticket: str) -> str:
    return f"{KEY_PREFIX}:{ticket}"


async def issue(redis: aioredis.Redis, ticket: Ticket, *, ttl_seconds: int) -> str:
    value = secrets.token_urlsafe(32)
    body = {
        "userId": str(ticket.user_id),
        "role": ticket.role,
        "sessionId": str(ticket.session_id) if ticket.session_id else None,
        "expiresAt": ticket.expires_at,
    }
    await redis.set(_key(value), json.dumps(body), ex=ttl_seconds)
    return value


async def redeem(redis: aioredis.Redis, value: str | None) -> Ticket | None:
    """The ticket's holder, once; None for an unknown, expired or already used ticket."""
    if not value or len(value) > MAX_TICKET_CHARS:
        return None
    raw = await redis.getdel(_key(value))
    if raw is None:
        return None
    body = json.loads(raw)
    return Ticket(
        user_id=uuid.UUID(body["userId"]),
        role=body["role"],
        session_id=uuid.UUID(body["sessionId"]) if body["sessionId"] else None,
        expires_at=int(body["expiresAt"]),
    )
