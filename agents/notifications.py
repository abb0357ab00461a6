"""Notifications: what users are told, in-app (MongoDB) and by email (SMTP).

`user.registered` → a welcome notification and a welcome email, each at most once per event:
the notification is upserted on an id derived from the event_id; the email is claimed in
`email_log` before it is sent (see tables/notifications.py). Dependencies that fail are retried
and, in the end, dead-lettered under the policy of agents/runtime.py.

Exactly one email, with one exception: if SMTP accepted the message and MongoDB then failed to
record it, the claim expires after its lease and the retry sends again. Both copies carry the same
Message-ID (derived from the event_id), which mail clients use to show them as one.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

import faust
from pydantic import ValidationError

from agents.runtime import (
    AgentDeps,
    PoisonEvent,
    RetryLater,
    subscribe,
    with_retries,
)
from bridges.email import EmailRejected, Mailer, OutgoingEmail, message_id_for
from infrastructure.mongo import MongoDatabase
from infrastructure.settings import Settings
from streams.events import Event
from streams.users import UserRegistered
from tables.notifications import (
    ClaimState,
    add_notification,
    claim_email,
    ensure_indexes,
    mark_email_sent,
    release_email,
)

log = logging.getLogger(__name__)

WELCOME = "welcome"

_NEXT_STEP = {
    "worker": "Complete your profile and skills so clients can find you, then bid on projects.",
    "client": "Post your first project and we will match it with the right workers.",
}
_DEFAULT_NEXT_STEP = "Complete your profile to get started."


# --- pure functions ---------------------------------------------------------------------------


def parse_user_registered(event: Event) -> UserRegistered:
    try:
        return UserRegistered.model_validate(event.data)
    except ValidationError as exc:
        raise PoisonEvent(f"user.registered data invalid: {exc.error_count()} errors") from exc


def effect_id(event: Event, kind: str) -> str:
    """The id of one effect of one event: the same on every delivery of that event."""
    return f"{event.event_id}:{kind}"


def welcome_notification(event: Event, user: UserRegistered) -> dict[str, Any]:
    """The in-app welcome, as stored in `notifications`."""
    return {
        "_id": effect_id(event, WELCOME),
        "userId": str(user.user_id),
        "type": WELCOME,
        "title": "Welcome to Tulifo Gig",
        "body": f"Hi {user.name}, welcome aboard! {_NEXT_STEP.get(user.role, _DEFAULT_NEXT_STEP)}",
        "read": False,
        # The event's time, not ours: a redelivery must not move the notification in the list.
        "createdAt": event.occurred_at,
        "eventId": str(event.event_id),
    }


def welcome_email(event: Event, user: UserRegistered, *, settings: Settings) -> OutgoingEmail:
    next_step = _NEXT_STEP.get(user.role, _DEFAULT_NEXT_STEP)
    text = (
        f"Hi {user.name},\n\n"
        f"Welcome to Tulifo Gig! Your {user.role} account for {user.email} is ready.\n\n"
        f"{next_step}\n\n"
        f"{settings.public_url}\n\n"
        "The Tulifo Gig team\n"
    )
    return OutgoingEmail(
        to=user.email,
        subject="Welcome to Tulifo Gig",
        text=text,
        message_id=message_id_for(event.event_id, WELCOME, settings.mail_from),
    )


# --- effects ----------------------------------------------------------------------------------


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
        await mailer.send(email)
    except BaseException as exc:
        # Release even when cancelled, so the redelivery after a restart can claim at once.
        with contextlib.suppress(Exception):
            await release_email(db, claim)
        if isinstance(exc, EmailRejected):
            raise PoisonEvent(f"welcome email rejected: {exc}") from exc
        raise
    await mark_email_sent(db, claim, now=datetime.now(UTC), message_id=email.message_id)
    return True


async def welcome_new_user(event: Event, deps: AgentDeps) -> None:
    """Both effects of `user.registered`; each is idempotent, so a redelivery repeats nothing."""
    user = parse_user_registered(event)
    notification = welcome_notification(event, user)
    await with_retries(
        lambda: add_notification(deps.mongo, notification),
        policy=deps.retry,
        what="welcome notification",
    )
    email = welcome_email(event, user, settings=deps.settings)
    sent = await with_retries(
        lambda: send_email_once(
            deps.mongo, deps.mailer, claim_id=effect_id(event, WELCOME), email=email
        ),
        policy=deps.retry,
        what="welcome email",
    )
    log.info(
        "welcomed user %s (%s)",
        user.user_id,
        "email sent" if sent else "email had been sent before",
        extra={"event_id": str(event.event_id)},
    )


def register(app: faust.App, deps: AgentDeps) -> None:
    async def on_user_registered(event: Event) -> None:
        await welcome_new_user(event, deps)

    subscribe(
        app,
        deps,
        stream="users",
        name="notifications.welcome",
        handlers={"user.registered": on_user_registered},
    )

    async def notification_indexes() -> None:
        try:
            await with_retries(
                lambda: ensure_indexes(deps.mongo), policy=deps.retry, what="notification indexes"
            )
        except PoisonEvent as exc:
            log.error("notification indexes not created: %s", exc)

    app.task(notification_indexes)
