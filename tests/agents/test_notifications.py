"""The welcome: what it says (pure functions) and that it happens once per event (real MongoDB
and SMTP capture, no Kafka)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agents.notifications import (
    parse_user_registered,
    welcome_email,
    welcome_new_user,
    welcome_notification,
)
from agents.runtime import AgentDeps, PoisonEvent, RetryPolicy
from bridges.email import EmailRejected, OutgoingEmail, SmtpMailer
from infrastructure.mongo import MongoDatabase
from infrastructure.processes import free_port
from infrastructure.settings import Settings
from streams.events import Event
from tables.notifications import EMAIL_CLAIM_LEASE
from tests.mail import MailCapture
from tests.streams.factories import user_registered

# Three quick attempts: these tests are about the outcome, not the patience.
QUICK = RetryPolicy(attempts=3, first_delay_s=0.01, max_delay_s=0.01)


class RejectingMailer:
    async def send(self, email: OutgoingEmail) -> None:
        raise EmailRejected("550 5.1.1 no such mailbox")


def deps_for(mongo_db: MongoDatabase, *, smtp_port: int, mailer: object = None) -> AgentDeps:
    settings = Settings(
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        mail_from="Tulifo Gig <hello@tulifo.test>",
        public_url="https://tulifo.test",
    )
    return AgentDeps(
        settings=settings,
        mongo=mongo_db,
        mailer=mailer or SmtpMailer(settings, timeout_s=2),  # type: ignore[arg-type]
        retry=QUICK,
    )


# --- what the welcome says --------------------------------------------------------------------


def test_the_welcome_notification_is_keyed_by_its_event() -> None:
    event = user_registered(role="worker")
    user = parse_user_registered(event)

    notification = welcome_notification(event, user)

    assert notification == {
        "_id": f"{event.event_id}:welcome",
        "userId": str(user.user_id),
        "type": "welcome",
        "title": "Welcome to Tulifo Gig",
        "body": (
            "Hi Ada Lovelace, welcome aboard! Complete your profile and skills so clients can "
            "find you, then bid on projects."
        ),
        "read": False,
        "createdAt": event.occurred_at,
        "eventId": str(event.event_id),
    }
    # The same event makes the same document (a redelivery rewrites it, never adds one).
    assert welcome_notification(event.model_copy(), parse_user_registered(event)) == notification
    other = user_registered(user_id=user.user_id)
    assert welcome_notification(other, user)["_id"] != notification["_id"]


def test_the_welcome_email_speaks_to_the_role_and_carries_the_events_message_id() -> None:
    event = user_registered(role="client", email="cleo@example.com")
    settings = Settings(mail_from="Tulifo Gig <hello@tulifo.test>", public_url="https://t.test")

    email = welcome_email(event, parse_user_registered(event), settings=settings)

    assert email.to == "cleo@example.com"
    assert email.subject == "Welcome to Tulifo Gig"
    assert email.message_id == f"<{event.event_id}.welcome@tulifo.test>"
    assert "Hi Ada Lovelace" in email.text
    assert "Post your first project" in email.text
    assert "https://t.test" in email.text


def test_a_registration_without_an_email_is_poison() -> None:
    event = user_registered()
    broken = Event.model_validate(
        {**event.model_dump(), "data": {k: v for k, v in event.data.items() if k != "email"}}
    )
    with pytest.raises(PoisonEvent, match=r"user\.registered data invalid"):
        parse_user_registered(broken)


# --- that it happens once ---------------------------------------------------------------------


async def test_a_new_user_is_welcomed_once_however_often_the_event_comes(
    mongo_db: MongoDatabase, smtp: MailCapture
) -> None:
    deps = deps_for(mongo_db, smtp_port=smtp.port)
    event = user_registered()

    for _ in range(3):
        await welcome_new_user(event, deps)

    assert len(smtp.to(event.data["email"])) == 1
    assert await mongo_db.notifications.count_documents({"userId": event.data["user_id"]}) == 1
    log = await mongo_db.email_log.find_one({"_id": f"{event.event_id}:welcome"})
    assert log is not None
    assert log["status"] == "sent"
    assert str(event.event_id) in log["messageId"]


async def test_smtp_down_dead_letters_the_event_and_leaves_the_email_to_a_retry(
    mongo_db: MongoDatabase, smtp: MailCapture
) -> None:
    event = user_registered()
    down = deps_for(mongo_db, smtp_port=free_port())

    with pytest.raises(PoisonEvent, match="welcome email: gave up after 3 attempts"):
        await welcome_new_user(event, down)

    # The in-app part is done; the email claim was given back, so a replay sends the email.
    assert await mongo_db.notifications.count_documents({"eventId": str(event.event_id)}) == 1
    assert await mongo_db.email_log.count_documents({}) == 0
    await welcome_new_user(event, deps_for(mongo_db, smtp_port=smtp.port))
    assert len(smtp.to(event.data["email"])) == 1


async def test_a_refused_recipient_is_poison_at_once(mongo_db: MongoDatabase) -> None:
    deps = deps_for(mongo_db, smtp_port=free_port(), mailer=RejectingMailer())
    with pytest.raises(PoisonEvent, match="welcome email rejected: 550"):
        await welcome_new_user(user_registered(), deps)
    assert await mongo_db.email_log.count_documents({}) == 0


async def test_an_email_another_worker_is_sending_is_not_sent_twice(
    mongo_db: MongoDatabase, smtp: MailCapture
) -> None:
    event = user_registered()
    await mongo_db.email_log.insert_one(
        {
            "_id": f"{event.event_id}:welcome",
            "status": "sending",
            "token": "someone-else",
            "claimedAt": datetime.now(UTC),
            "attempts": 1,
        }
    )
    with pytest.raises(PoisonEvent, match="being sent by another worker"):
        await welcome_new_user(event, deps_for(mongo_db, smtp_port=smtp.port))
    assert smtp.to(event.data["email"]) == []


async def test_the_claim_of_a_worker_that_died_mid_send_is_taken_over(
    mongo_db: MongoDatabase, smtp: MailCapture
) -> None:
    event = user_registered()
    await mongo_db.email_log.insert_one(
        {
            "_id": f"{event.event_id}:welcome",
            "status": "sending",
            "token": "dead-worker",
            "claimedAt": datetime.now(UTC) - EMAIL_CLAIM_LEASE - timedelta(seconds=1),
            "attempts": 1,
        }
    )
    await welcome_new_user(event, deps_for(mongo_db, smtp_port=smtp.port))
    assert len(smtp.to(event.data["email"])) == 1
