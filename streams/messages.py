"""Records of the messages domain, and the names of its live rooms.

`message.sent` travels on the `messages` stream keyed by the conversation id (streams/topics.py),
so one conversation's messages reach the messages agent in the order they were sent. The event
carries the whole message: the agent materializes it into MongoDB `flexwork_messages` from the
event alone (tables/messages.py), and a replay of the outbox rebuilds the history.

Live delivery (api/realtime/) mirrors the seed's Socket.IO rooms: `user:<id>` (every socket of a
user, joined at connect) and `conversation:<id>` (sockets that joined it). Each room is a Redis
pub/sub channel under `tulifo:chat:`, which API processes subscribe to and agents publish on.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import ClassVar, Final, Literal

from pydantic import Field

from streams.events import EventData

CHANNEL_PREFIX: Final = "tulifo:chat:"
MessageType = Literal["text", "file", "system"]


class MessageSent(EventData):
    """A stored message. The API knows who has a live connection when it stores one, so it names
    the recipients who had none (`offline_recipient_ids`): only they get a `new_message`
    notification (agents/notification_templates.py)."""

    event_type: ClassVar[str] = "message.sent"

    message_id: uuid.UUID
    conversation_id: uuid.UUID
    sender_id: uuid.UUID
    recipient_ids: list[uuid.UUID]
    offline_recipient_ids: list[uuid.UUID] = Field(default_factory=list)
    # The start of the text; cut to PREVIEW_CHARS by the notification templates.
    preview: str = ""
    # The message itself, for the history. Defaults keep events of the notifications-only shape
    # (before messaging published this record) readable.
    project_id: uuid.UUID | None = None
    # The message's place in its conversation (1, 2, 3, …), given by PostgreSQL.
    message_sequence: int | None = Field(default=None, ge=1)
    content: str = ""
    message_type: MessageType = "text"
    # When it was stored, in milliseconds (what MongoDB keeps): the API answers the same time.
    sent_at: datetime | None = None


# What the message said stays inside the pipeline: the RabbitMQ feed (bridges/rabbitmq.py),
# read by services that are no party to the conversation, carries `message.sent` without it.
FEED_PRIVATE_FIELDS: Final = frozenset({"content", "preview"})


def user_room(user_id: uuid.UUID | str) -> str:
    return f"user:{user_id}"


def conversation_room(conversation_id: uuid.UUID | str) -> str:
    return f"conversation:{conversation_id}"


def room_channel(room: str) -> str:
    """The Redis pub/sub channel of a room: `tulifo:chat:user:<id>`."""
    return f"{CHANNEL_PREFIX}{room}"
