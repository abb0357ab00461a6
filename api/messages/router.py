"""/api/conversations and /api/messages (seed 2.4): open a conversation, list them, post a message
(`{conversationId, content, type}`), read the history, mark messages read.

History: `GET /api/conversations/{id}/messages?limit=&cursor=`, newest first; `nextCursor` leads to
the older page. Live delivery is the WebSocket of api/realtime/router.py.
"""

from __future__ import annotations

import uuid

from fastapi import Response, status

from api.auth.dependencies import SignedIn
from api.envelope import Envelope, ok
from api.messages import service
from api.messages.schemas import (
    ConversationOpen,
    ConversationOut,
    ConversationPage,
    MessageCreate,
    MessageOut,
    MessagePage,
    ReadReceiptIn,
    ReadReceiptOut,
)
from api.pagination import DEFAULT_LIMIT, CursorParam, Limit, decode_cursor
from api.routers import DomainRouter

router = DomainRouter(tags=["messages"])


@router.post(
    "/conversations",
    status_code=status.HTTP_201_CREATED,
    responses={
        status.HTTP_200_OK: {
            "model": Envelope[ConversationOut],
            "description": "The conversation existed already",
        }
    },
)
async def open_conversation(
    body: ConversationOpen, caller: SignedIn, response: Response
) -> Envelope[ConversationOut]:
    """Open (or, when it exists, return with 200) the conversation between the caller and the
    other party of a project: its client, or a worker who bid on it or is booked for it."""
    conversation, created = await service.open_conversation(
        pool=caller.pool, user=caller.user, body=body
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return ok(conversation)


@router.get("/conversations")
async def list_conversations(
    caller: SignedIn, limit: Limit = DEFAULT_LIMIT, cursor: CursorParam = None
) -> Envelope[ConversationPage]:
    """The caller's conversations, latest activity first, each with its last message and the
    caller's unread count."""
    page = await service.list_conversations(
        pool=caller.pool, user=caller.user, cursor=decode_cursor(cursor), limit=limit
    )
    return ok(page)


@router.post("/messages", status_code=status.HTTP_201_CREATED)
async def send_message(body: MessageCreate, caller: SignedIn) -> Envelope[MessageOut]:
    """Post a message to a conversation the caller is in; delivered live as `new_message`."""
    return ok(
        await service.send_message(
            pool=caller.pool, redis=caller.redis, user=caller.user, body=body
        )
    )


@router.get("/conversations/{conversation_id}/messages")
async def conversation_history(
    conversation_id: uuid.UUID,
    caller: SignedIn,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> Envelope[MessagePage]:
    """A conversation's messages, newest first."""
    page = await service.history(
        pool=caller.pool,
        mongo=caller.mongo,
        user=caller.user,
        conversation_id=conversation_id,
        cursor=cursor,
        limit=limit,
    )
    return ok(page)


@router.post("/conversations/{conversation_id}/read")
async def mark_read(
    conversation_id: uuid.UUID, body: ReadReceiptIn, caller: SignedIn
) -> Envelope[ReadReceiptOut]:
    """Everything up to `upToMessageId` is read by the caller; the other party hears it live
    as `messages_read`."""
    receipt = await service.mark_read(
        pool=caller.pool,
        redis=caller.redis,
        user=caller.user,
        conversation_id=conversation_id,
        body=body,
    )
    return ok(receipt)
