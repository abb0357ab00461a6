"""Bodies of /api/conversations and /api/messages."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Final, Literal

from api.projects.schemas import bounded
from api.schemas import ApiModel, ResponseModel
from streams.messages import MessageType

# A chat message, not a document: 5,000 characters is several screens. The database holds the
# same limit (migration 0010).
MAX_CONTENT_CHARS: Final = 5000


class ConversationOpen(ApiModel):
    project_id: uuid.UUID
    # The other party: the project's client (when a worker opens it) or a worker who bid on or
    # was booked for the project (when its client does).
    participant_id: uuid.UUID


class MessageCreate(ApiModel):
    """The seed's `{conversationId, content, type}`."""

    conversation_id: uuid.UUID
    # Trimmed; empty or blank is refused with a 422 naming `content`.
    content: Annotated[str, bounded(MAX_CONTENT_CHARS, min_length=1)]
    # `file`: the content is the file's URL. `system` messages are the platform's own.
    type: Literal["text", "file"] = "text"


class ReadReceiptIn(ApiModel):
    # The newest message the caller has seen; everything up to it counts as read.
    up_to_message_id: uuid.UUID


class MessageOut(ResponseModel):
    id: uuid.UUID
    conversation_id: uuid.UUID
    # 1, 2, 3, … within the conversation: the order to show them in.
    sequence: int
    sender_id: uuid.UUID
    type: MessageType
    content: str
    created_at: datetime


class MessagePage(ResponseModel):
    items: list[MessageOut]
    # Pass as `cursor` for the next (older) page; null on the last page.
    next_cursor: str | None


class Participant(ResponseModel):
    id: uuid.UUID
    name: str
    role: Literal["client", "worker"]


class ConversationOut(ResponseModel):
    id: uuid.UUID
    project_id: uuid.UUID
    project_title: str
    client_id: uuid.UUID
    worker_id: uuid.UUID
    # The other party, from the caller's side.
    participant: Participant
    last_message: MessageOut | None
    # Messages from the other party after the caller's last read one.
    unread_count: int
    last_activity_at: datetime
    created_at: datetime


class ConversationPage(ResponseModel):
    items: list[ConversationOut]
    next_cursor: str | None


class ReadReceiptOut(ResponseModel):
    conversation_id: uuid.UUID
    user_id: uuid.UUID
    up_to_message_id: uuid.UUID
    sequence: int
    read_at: datetime
    unread_count: int
