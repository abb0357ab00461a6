"""Notifications: what users are told about their gigs, in-app (MongoDB), by email (SMTP) and by
web push (bridges/webpush.py, when its VAPID keys are usable).

Per event: its template (agents/notification_templates.py) says who is told what; one query to
PostgreSQL reads those users' names, addresses and notification settings and the project's title;
each recipient then gets each channel their settings allow (agents/notification_preferences.py).

Each effect happens at most once per (event, kind, recipient, channel), whatever the
redeliveries: the in-app notification is upserted on "<event_id>:<kind>:<user>:in_app"; the email
and the push are claimed under "<event_id>:<kind>:<user>:email|push" in their ledgers before they
are sent (tables/notifications.py). A failing dependency is retried with backoff and, in the end,
the event is dead-lettered under the policy of agents/runtime.py; the channels already done are
not repeated when the dead letter is run again.

Exactly one email, with one exception: if SMTP accepted the message and MongoDB then failed to
record it, the claim expires after its lease and the retry sends again. Both copies carry the same
Message-ID (derived from the event_id), which mail clients use to show them as one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import faust

from agents.live import LivePublisher, publish_notification
from agents.notification_preferences import wants
from agents.notification_templates import (
    TEMPLATES,
    Context,
    Notice,
    Party,
    Rendered,
    parties_needed,
    render,
)
from agents.runtime import (
    AgentDeps,
    PoisonEvent,
    RetryLater,
    close_at_shutdown,
    subscribe,
    with_retries,
)
from bridges.email import EmailRejected, Mailer, OutgoingEmail, message_id_for
from bridges.webpush import PushUnavailable, WebPusher, push_to_user
from infrastructure.database import create_pool
from infrastructure.mongo import MongoDatabase
from infrastructure.settings import Settings
from streams.events import Event
from streams.topics import STREAMS
from streams.users import UserRegistered
from tables.notifications import (
    PUSH_LOG,
    ClaimState,
    EmailClaim,
    add_notification,
    claim_email,
    ensure_indexes,
    mark_email_sent,
    release_email,
)
from tables.sink import PG_UNAVAILABLE

log = logging.getLogger(__name__)

# One query per event, one at a time per agent: two connections are plenty.
POOL_SIZE = 2

# Users, their settings and the project's title, in one round trip. Deactivated users are not
# returned, so they are told nothing.
_CONTEXT_SQL = """
SELECT 'user' AS what, u.id, u.name, u.email, u.role, s.notifications, NULL AS title
  FROM users u LEFT JOIN user_settings s ON s.user_id = u.id
 WHERE u.id = ANY($1::uuid[]) AND u.is_active
UNION ALL
SELECT 'project', NULL, NULL, NULL, NULL, NULL, p.title FROM projects p WHERE p.id = $2
"""


class RecipientRefused(PoisonEvent):
    """The mail server refused one recipient for good: the event's other recipients still get
    theirs, then the event is dead-lettered with this reason."""


# --- pure functions ---------------------------------------------------------------------------


def effect_id(event: Event, notice: Notice, channel: str) -> str:
    """The id of one effect of one event: the same on every delivery of that event."""
    return f"{event.event_id}:{notice.kind}:{notice.recipient_id}:{channel}"


def in_app_document(event: Event, rendered: Rendered) -> dict[str, Any]:
    """The in-app notification, as stored in `flexwork_notifications`."""
    notice = rendered.notice
    return {
        "_id": effect_id(event, notice, "in_app"),
        "userId": str(notice.recipient_id),
        "type": notice.kind,
        "title": notice.title,
        "body": notice.body,
        "url": notice.path,
        "read": False,
        # The event's time, not ours: a redelivery must not move the notification in the list.
        "createdAt": event.occurred_at,
        "eventId": str(event.event_id),
    }


def email_for(
    event: Event, rendered: Rendered, recipient: Party, *, settings: Settings
) -> OutgoingEmail:
    purpose = f"{rendered.notice.kind}.{recipient.id}"
    return OutgoingEmail(
        to=recipient.email,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        message_id=message_id_for(event.event_id, purpose, settings.mail_from),
    )


def context_from_rows(rows: list[Any], event: Event) -> Context:
    parties: dict[uuid.UUID, Party] = {}
    title: str | None = None
    for row in rows:
        if row["what"] == "project":
            title = row["title"]
            continue
        prefs = row["notifications"] if isinstance(row["notifications"], dict) else {}
        parties[row["id"]] = Party(row["id"], row["name"], row["email"], row["role"], prefs)
    if event.type == "user.registered":
        # The event itself names the new user; a user the write side has not kept (or a replay
        # from before the settings existed) is still welcomed, with the default settings.
        with contextlib.suppress(ValueError):
            user = UserRegistered.model_validate(event.data)
            parties.setdefault(
                user.user_id, Party(user.user_id, user.name, user.email, user.role, {})
            )
    return Context(parties, title)


# --- web push -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PushHook:
    pusher: object
    # `push_to_user(db, pusher, user_id, payload, *, delivery_id)`: tests hand in a recorder.
    send: Callable[..., Awaitable[int]] = push_to_user
    # What `send` raises when a push service may take the push later (retried, then dead letter).
    unavailable: tuple[type[BaseException], ...] = (PushUnavailable,)


def load_push(settings: Settings) -> PushHook | None:
    """A `WebPusher` from the VAPID settings, or None (push off) when they are unusable: the
    other channels go on, and the reason is logged once."""
    try:
        return PushHook(WebPusher.from_settings(settings))
    except ValueError as exc:
        log.warning("web push is off: %s", exc)
        return None


# --- effects ----------------------------------------------------------------------------------


async def _send_claimed(
    db: MongoDatabase, claim: EmailClaim, send: Callable[[], Awaitable[object]]
) -> None:
    try:
        await send()
    except BaseException:
        # Release even when cancelled, so the redelivery after a restart can claim at once.
        with contextlib.suppress(Exception):
            await release_email(db, claim)
        raise


async def send_email_once(
    db: MongoDatabase, mailer: Mailer, *, claim_id: str, email: OutgoingEmail
) -> bool:
    """Send `email` unless its claim says it was sent; True when this call sent it."""
    claim = await claim_email(db, claim_id, now=datetime.now(UTC))
    if claim.state is ClaimState.SENT:
        return False
    if claim.state is ClaimState.IN_PROGRESS:
        raise RetryLater(f"email {claim_id} is being sent by another worker")
    try:
        await _send_claimed(db, claim, lambda: mailer.send(email))
    except EmailRejected as exc:
        raise RecipientRefused(f"email {claim_id} rejected: {exc}") from exc
    await mark_email_sent(db, claim, now=datetime.now(UTC), message_id=email.message_id)
    return True


async def push_once(
    db: MongoDatabase, hook: PushHook, *, claim_id: str, user_id: str, payload: dict[str, str]
) -> bool:
    """Push `payload` to the user's subscriptions unless the ledger says it was pushed."""
    claim = await claim_email(db, claim_id, now=datetime.now(UTC), ledger=PUSH_LOG)
    if claim.state is ClaimState.SENT:
        return False
    if claim.state is ClaimState.IN_PROGRESS:
        raise RetryLater(f"push {claim_id} is being sent by another worker")

    async def send() -> None:
        try:
            # The same id per subscription: after a partial failure, the retry pushes only to
            # the browsers that did not get it.
            await hook.send(db, hook.pusher, user_id, payload, delivery_id=claim_id)
        except hook.unavailable as exc:
            raise RetryLater(f"push {claim_id}: {exc}") from exc

    await _send_claimed(db, claim, send)
    await mark_email_sent(db, claim, now=datetime.now(UTC), message_id=claim_id)
    return True


class Notifier:
    """Everything one event's notifications need; the PostgreSQL pool and the pusher are made
    on first use (nothing connects at import or registration)."""

    def __init__(
        self, deps: AgentDeps, *, pool: asyncpg.Pool | None = None, push: PushHook | None = None
    ) -> None:
        self.deps = deps
        self._pool = pool
        # The agents of the four streams share this notifier: one of them makes the pool.
        self._pool_lock = asyncio.Lock()
        self._push = push
        self._push_loaded = push is not None
        # The stored in-app notification also goes to the user's live dashboard (best effort).
        self.live = LivePublisher(deps.redis)

    async def close(self) -> None:
        """Close what this notifier opened: its pool and the pusher's HTTP session (at worker
        shutdown; aiohttp warns of a session left open, and PostgreSQL keeps the connections
        until it notices)."""
        pusher = self._push.pusher if self._push is not None else None
        if isinstance(pusher, WebPusher):
            await pusher.close()
        if self._pool is not None:
            # Forgotten first: an event still handled after this makes a new pool, not an error.
            pool, self._pool = self._pool, None
            await pool.close()

    def push(self) -> PushHook | None:
        if not self._push_loaded:
            self._push = load_push(self.deps.settings)
            self._push_loaded = True
        return self._push

    async def _read_context(self, event: Event) -> Context:
        users, project = parties_needed(event)
        try:
            async with self._pool_lock:
                if self._pool is None:
                    self._pool = await create_pool(
                        self.deps.settings.database_url, min_size=1, max_size=POOL_SIZE
                    )
            rows = await self._pool.fetch(_CONTEXT_SQL, users, project)
        except PG_UNAVAILABLE as exc:
            raise RetryLater(f"PostgreSQL: {type(exc).__name__}: {exc}") from exc
        return context_from_rows(list(rows), event)

    async def notify(self, event: Event) -> int:
        """Every notification of `event`, on every channel its recipients allow; the number of
        recipients told. Each effect is idempotent, so a redelivery repeats nothing."""
        template = TEMPLATES[event.type]
        # First without names: validates the record (poison before any query) and skips the
        # query for events that tell nobody anything (most status changes).
        if not template(event, Context({})):
            return 0
        deps = self.deps
        ctx = await with_retries(
            lambda: self._read_context(event), policy=deps.retry, what=f"{event.type} context"
        )
        told = 0
        refused: list[str] = []
        for notice in template(event, ctx):
            recipient = ctx.parties.get(notice.recipient_id)
            if recipient is None:
                log.info("%s: user %s not found or inactive", notice.kind, notice.recipient_id)
                continue
            try:
                await self.deliver(event, notice, recipient)
            except RecipientRefused as exc:
                refused.append(str(exc))
                continue
            told += 1
        if refused:
            raise RecipientRefused("; ".join(refused))
        return told

    async def deliver(self, event: Event, notice: Notice, recipient: Party) -> None:
        deps = self.deps
        rendered = render(notice, recipient, public_url=deps.settings.public_url)
        prefs, kind = recipient.preferences, notice.kind
        if wants(prefs, kind=kind, channel="in_app"):
            document = in_app_document(event, rendered)
            await with_retries(
                lambda: add_notification(deps.mongo, document),
                policy=deps.retry,
                what=f"{kind} notification",
            )
            await publish_notification(self.live, document)
        if wants(prefs, kind=kind, channel="email") and recipient.email:
            email = email_for(event, rendered, recipient, settings=deps.settings)
            await with_retries(
                lambda: send_email_once(
                    deps.mongo, deps.mailer, claim_id=effect_id(event, notice, "email"), email=email
                ),
                policy=deps.retry,
                what=f"{kind} email",
            )
        hook = self.push() if wants(prefs, kind=kind, channel="push") else None
        if hook is not None:
            await with_retries(
                lambda: push_once(
                    deps.mongo,
                    hook,
                    claim_id=effect_id(event, notice, "push"),
                    user_id=str(recipient.id),
                    payload=rendered.push,
                ),
                policy=deps.retry,
                what=f"{kind} push",
            )


# Agent name per stream; the users one keeps its first name (it was only the welcome then).
AGENT_NAMES = {
    "users": "notifications.welcome",
    "gigs": "notifications.gigs",
    "reviews": "notifications.reviews",
    "messages": "notifications.messages",
}


def register(app: faust.App, deps: AgentDeps) -> None:
    notifier = Notifier(deps)
    close_at_shutdown(app, notifier.close)

    async def on_event(event: Event) -> None:
        await notifier.notify(event)

    for stream, name in AGENT_NAMES.items():
        types = [t for t in STREAMS[stream] if t in TEMPLATES]
        subscribe(app, deps, stream=stream, name=name, handlers=dict.fromkeys(types, on_event))

    async def notification_indexes() -> None:
        try:
            await with_retries(
                lambda: ensure_indexes(deps.mongo), policy=deps.retry, what="notification indexes"
            )
        except PoisonEvent as exc:
            log.error("notification indexes not created: %s", exc)

    app.task(notification_indexes)
