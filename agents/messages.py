"""Messages: each `message.sent` is stored in MongoDB `flexwork_messages` (the history the API
reads), then delivered live to the participants' sockets through Redis pub/sub.

Store first, then publish: a receiver who gets the live `new_message` and then reads the history
finds the message there.

The frame goes to the user rooms of every participant (the sender's other tabs too), not only to
the conversation's room as the seed's Socket.IO server did: the API counts a user with any live
socket as online and does not notify them (streams/messages.py MessageSent), so every socket of
theirs must get the message, whichever conversation it has open. Sockets in the conversation's
room are participants' sockets, so they get it through their user room, once.

Once per event: the document is inserted with `$setOnInsert`, and marked `publishedAt` after the
publish; a redelivery finds the mark and publishes nothing. A worker that dies between the publish
and the mark publishes once more on redelivery, with the same message id (clients keep one
message per id). The events of one conversation arrive in order (one partition per key), so the
live frames follow the conversation's sequence.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import faust
from pydantic import ValidationError
from redis.exceptions import RedisError

from agents.runtime import AgentDeps, PoisonEvent, RetryLater, subscribe, with_retries
from streams.events import Event
from streams.messages import MessageSent, user_room
from tables import messages as store

log = logging.getLogger(__name__)

AGENT_NAME = "messages"


def parse(event: Event) -> MessageSent:
    """The event's record; poison when it is not a whole message (nothing to store)."""
    try:
        message = MessageSent.model_validate(event.data)
    except ValidationError as exc:
        raise PoisonEvent(f"not a message.sent record: {exc.errors()[0]['msg']}") from exc
    if message.message_sequence is None or not message.content:
        raise PoisonEvent("message.sent without the message (sequence and content)")
    return message


class Deliverer:
    def __init__(self, deps: AgentDeps) -> None:
        self.deps = deps

    async def handle(self, event: Event) -> bool:
        """Store and publish one message; True when this call published it."""
        deps = self.deps
        message = parse(event)
        document = store.message_document(event, message)
        await with_retries(
            lambda: store.add_message(deps.mongo, document),
            policy=deps.retry,
            what="message store",
        )
        if deps.redis is None:
            return False
        published = await with_retries(
            lambda: store.is_published(deps.mongo, message_id=document["_id"]),
            policy=deps.retry,
            what="message publish mark",
        )
        if published:
            return False
        rooms = [user_room(user) for user in (message.sender_id, *message.recipient_ids)]
        frame = store.message_frame(document)

        async def send() -> None:
            assert deps.redis is not None
            try:
                await store.publish(deps.redis, dict.fromkeys(rooms), frame)
            except RedisError as exc:
                raise RetryLater(f"Redis: {type(exc).__name__}: {exc}") from exc

        await with_retries(send, policy=deps.retry, what="message publish")
        await with_retries(
            lambda: store.mark_published(
                deps.mongo, message_id=document["_id"], now=datetime.now(UTC)
            ),
            policy=deps.retry,
            what="message publish mark",
        )
        return True


def register(app: faust.App, deps: AgentDeps) -> None:
    deliverer = Deliverer(deps)

    async def on_message(event: Event) -> None:
        await deliverer.handle(event)

    subscribe(app, deps, stream="messages", name=AGENT_NAME, handlers={"message.sent": on_message})

    async def message_indexes() -> None:
        try:
            await with_retries(
                lambda: store.ensure_indexes(deps.mongo), policy=deps.retry, what="message indexes"
            )
        except PoisonEvent as exc:
            log.error("message indexes not created: %s", exc)

    app.task(message_indexes)
