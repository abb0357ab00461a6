"""Notifications of an event: who gets what on which channel, at most once per event (real
PostgreSQL, MongoDB and SMTP capture; no Kafka: the agent's handler is called directly)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.message import Message
from typing import Any

import asyncpg
import pytest

from agents.notification_templates import Notice, Party, render
from agents.notifications import Notifier, PushHook, effect_id, in_app_document, load_push
from agents.runtime import AgentDeps, PoisonEvent, RetryPolicy
from bridges.email import EmailRejected, OutgoingEmail, SmtpMailer
from bridges.webpush import WebPusher
from infrastructure.database import create_pool
from infrastructure.mongo import MongoDatabase
from infrastructure.processes import free_port
from infrastructure.settings import Settings
from streams.events import Event, new_event
from streams.payments import PaymentCompleted
from streams.reviews import ReviewCreated
from tables.notifications import EMAIL_CLAIM_LEASE, NOTIFICATIONS
from tests.mail import MailCapture
from tests.streams.factories import user_registered

# Three quick attempts: these tests are about the outcome, not the patience.
QUICK = RetryPolicy(attempts=3, first_delay_s=0.01, max_delay_s=0.01)


class RejectingMailer:
    async def send(self, email: OutgoingEmail) -> None:
        raise EmailRejected("550 5.1.1 no such mailbox")


class RecordingPusher:
    """Stands in for bridges/webpush.py's `push_to_user` (browsers are not part of the run)."""

    def __init__(self, *, fail_first: int = 0) -> None:
        self.pushed: list[tuple[str, dict[str, str]]] = []
        self.fail_first = fail_first

    async def push_to_user(
        self,
        db: MongoDatabase,
        pusher: object,
        user_id: str,
        payload: dict[str, str],
        *,
        delivery_id: str | None = None,
    ) -> int:
        if self.fail_first > 0:
            self.fail_first -= 1
            raise PushServiceBusy("503 from the push service")
        assert delivery_id is not None and delivery_id.endswith(f":{user_id}:push")
        self.pushed.append((user_id, payload))
        return 1


class PushServiceBusy(Exception):
    pass


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await create_pool(database_url, min_size=1, max_size=2)
    try:
        yield created
    finally:
        await created.close()


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


async def a_user(
    pool: asyncpg.Pool,
    *,
    name: str,
    role: str,
    notifications: dict[str, Any] | None = None,
    active: bool = True,
) -> Party:
    user_id = uuid.uuid4()
    email = f"{name.split()[0].lower()}-{user_id.hex[:8]}@example.com"
    await pool.execute(
        "INSERT INTO users (id, email, password_hash, role, name, is_active)"
        " VALUES ($1, $2, 'x', $3, $4, $5)",
        user_id,
        email,
        role,
        name,
        active,
    )
    await pool.execute(
        "INSERT INTO user_settings (user_id, notifications) VALUES ($1, $2)",
        user_id,
        notifications or {},
    )
    return Party(user_id, name, email, role, notifications or {})


async def a_project(pool: asyncpg.Pool, client_id: uuid.UUID, *, title: str) -> uuid.UUID:
    project_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO projects (id, client_id, title, budget_cents, currency)"
        " VALUES ($1, $2, $3, 100000, 'USD')",
        project_id,
        client_id,
        title,
    )
    return project_id


async def a_review(
    pool: asyncpg.Pool,
    *,
    reviewee_settings: dict[str, Any] | None = None,
    title: str = "Data pipeline",
    reviewee_active: bool = True,
) -> tuple[Event, Party, Party]:
    client = await a_user(pool, name="Cleo Client", role="client")
    worker = await a_user(
        pool,
        name="Will Worker",
        role="worker",
        notifications=reviewee_settings,
        active=reviewee_active,
    )
    project_id = await a_project(pool, client.id, title=title)
    review = ReviewCreated(
        review_id=uuid.uuid4(),
        project_id=project_id,
        reviewer_id=client.id,
        reviewee_id=worker.id,
        reviewee_role="worker",
        rating=5,
    )
    return new_event(review, aggregate_id=worker.id, actor_id=client.id), client, worker


def parts(mail: Message) -> dict[str, str]:
    assert mail.get_content_type() == "multipart/alternative"
    return {
        part.get_content_type(): part.get_payload(decode=True).decode()  # type: ignore[union-attr]
        for part in mail.get_payload()  # type: ignore[union-attr]
    }


async def in_app(mongo_db: MongoDatabase, user: Party) -> list[dict[str, Any]]:
    return [d async for d in mongo_db[NOTIFICATIONS].find({"userId": str(user.id)})]


# --- documents --------------------------------------------------------------------------------


def test_the_in_app_notification_is_keyed_by_event_kind_recipient_and_channel() -> None:
    event = user_registered(role="worker")
    recipient = uuid.UUID(event.data["user_id"])
    notice = Notice("welcome", recipient, "Welcome to Tulifo Gig", "Hi", "/profile")
    rendered = render(notice, Party(recipient, "Ada", "a@x.io", "worker", {}), public_url="x")

    document = in_app_document(event, rendered)

    assert document == {
        "_id": f"{event.event_id}:welcome:{recipient}:in_app",
        "userId": str(recipient),
        "type": "welcome",
        "title": "Welcome to Tulifo Gig",
        "body": "Hi",
        "url": "/profile",
        "read": False,
        "createdAt": event.occurred_at,
        "eventId": str(event.event_id),
    }
    assert effect_id(event, notice, "email") == f"{event.event_id}:welcome:{recipient}:email"


# --- a review, end to end through the agent's handler ------------------------------------------


async def test_a_review_emails_and_notifies_the_reviewee_once_however_often_it_comes(
    mongo_db: MongoDatabase, smtp: MailCapture, pool: asyncpg.Pool
) -> None:
    event, client, worker = await a_review(pool, title="Data <pipeline> & co")
    notifier = Notifier(deps_for(mongo_db, smtp_port=smtp.port), pool=pool)

    for _ in range(3):
        assert await notifier.notify(event) == 1

    [mail] = smtp.to(worker.email)
    assert mail["Subject"] == "You received a review"
    assert mail["Message-ID"] == f"<{event.event_id}.review_received.{worker.id}@tulifo.test>"
    body = parts(mail)
    assert "Cleo Client rated you 5 of 5 for “Data <pipeline> & co”." in body["text/plain"]
    assert "“Data &lt;pipeline&gt; &amp; co”" in body["text/html"]
    assert f'href="https://tulifo.test/users/{worker.id}/reviews"' in body["text/html"]
    [notification] = await in_app(mongo_db, worker)
    assert notification["kind"] == "notification"
    assert notification["type"] == "review_received"
    assert notification["body"] == "Cleo Client rated you 5 of 5 for “Data <pipeline> & co”."
    # The reviewer is told nothing.
    assert smtp.to(client.email) == []
    assert await in_app(mongo_db, client) == []
    claims = await mongo_db.email_log.count_documents({"status": "sent"})
    assert claims == 1


async def test_a_channel_the_reviewee_turned_off_gets_nothing_and_the_others_still_do(
    mongo_db: MongoDatabase, smtp: MailCapture, pool: asyncpg.Pool
) -> None:
    deps = deps_for(mongo_db, smtp_port=smtp.port)
    no_email, _, quiet = await a_review(pool, reviewee_settings={"reviews": {"email": False}})
    no_app, _, unseen = await a_review(
        pool, reviewee_settings={"types": {"review_received": {"in_app": False}}}
    )
    nothing, _, hermit = await a_review(
        pool, reviewee_settings={"channels": {"email": False, "in_app": False}}
    )
    notifier = Notifier(deps, pool=pool)

    for event in (no_email, no_app, nothing):
        await notifier.notify(event)

    assert smtp.to(quiet.email) == []
    assert len(await in_app(mongo_db, quiet)) == 1
    assert len(smtp.to(unseen.email)) == 1
    assert await in_app(mongo_db, unseen) == []
    assert smtp.to(hermit.email) == []
    assert await in_app(mongo_db, hermit) == []


async def test_a_deactivated_user_is_told_nothing(
    mongo_db: MongoDatabase, smtp: MailCapture, pool: asyncpg.Pool
) -> None:
    event, _, worker = await a_review(pool, reviewee_active=False)
    assert await Notifier(deps_for(mongo_db, smtp_port=smtp.port), pool=pool).notify(event) == 0
    assert smtp.to(worker.email) == []
    assert await in_app(mongo_db, worker) == []


async def test_push_goes_once_per_event_and_only_where_the_user_allows_it(
    mongo_db: MongoDatabase, smtp: MailCapture, pool: asyncpg.Pool
) -> None:
    recorder = RecordingPusher()
    hook = PushHook(pusher=object(), send=recorder.push_to_user)
    notifier = Notifier(deps_for(mongo_db, smtp_port=smtp.port), pool=pool, push=hook)
    event, _, worker = await a_review(pool)
    silenced, _, _ = await a_review(pool, reviewee_settings={"reviews": {"push": False}})

    for _ in range(2):
        await notifier.notify(event)
        await notifier.notify(silenced)

    assert recorder.pushed == [
        (
            str(worker.id),
            {
                "title": "You received a review",
                "body": "Cleo Client rated you 5 of 5 for “Data pipeline”.",
                "url": f"/users/{worker.id}/reviews",
            },
        )
    ]


async def test_a_push_service_unavailable_for_a_while_is_retried_and_pushed_once(
    mongo_db: MongoDatabase, smtp: MailCapture, pool: asyncpg.Pool
) -> None:
    recorder = RecordingPusher(fail_first=2)
    hook = PushHook(object(), recorder.push_to_user, (PushServiceBusy,))
    event, _, worker = await a_review(pool)

    await Notifier(deps_for(mongo_db, smtp_port=smtp.port), pool=pool, push=hook).notify(event)

    assert [user for user, _ in recorder.pushed] == [str(worker.id)]
    claim = await mongo_db.push_log.find_one(
        {"_id": f"{event.event_id}:review_received:{worker.id}:push"}
    )
    assert claim is not None and claim["status"] == "sent" and claim["attempts"] == 1


def test_push_is_off_when_the_vapid_keys_are_unusable() -> None:
    assert load_push(Settings(vapid_private_key="not a key")) is None
    hook = load_push(Settings())
    assert hook is not None and isinstance(hook.pusher, WebPusher)


# --- the welcome ------------------------------------------------------------------------------


async def test_a_new_user_is_welcomed_once_however_often_the_event_comes(
    mongo_db: MongoDatabase, smtp: MailCapture, pool: asyncpg.Pool
) -> None:
    # Not in PostgreSQL (as in a replayed history): the event's own name and address do.
    event = user_registered(role="client")
    notifier = Notifier(deps_for(mongo_db, smtp_port=smtp.port), pool=pool)

    for _ in range(3):
        await notifier.notify(event)

    [mail] = smtp.to(event.data["email"])
    assert mail["Subject"] == "Welcome to Tulifo Gig"
    assert "Hi Ada Lovelace" in parts(mail)["text/plain"]
    assert "Post your first project" in parts(mail)["text/plain"]
    assert await mongo_db[NOTIFICATIONS].count_documents({"userId": event.data["user_id"]}) == 1
    claim_id = f"{event.event_id}:welcome:{event.data['user_id']}:email"
    log = await mongo_db.email_log.find_one({"_id": claim_id})
    assert log is not None
    assert log["status"] == "sent"
    assert str(event.event_id) in log["messageId"]


async def test_the_welcome_follows_the_settings_stored_with_the_account(
    mongo_db: MongoDatabase, smtp: MailCapture, pool: asyncpg.Pool
) -> None:
    user = await a_user(
        pool, name="Quiet Quinn", role="worker", notifications={"channels": {"email": False}}
    )
    event = user_registered(user_id=user.id, email=user.email)
    await Notifier(deps_for(mongo_db, smtp_port=smtp.port), pool=pool).notify(event)
    assert smtp.to(user.email) == []
    assert len(await in_app(mongo_db, user)) == 1


# --- failures ---------------------------------------------------------------------------------


async def test_a_refused_address_leaves_the_other_recipients_served_and_parks_the_event(
    mongo_db: MongoDatabase, smtp: MailCapture, pool: asyncpg.Pool
) -> None:
    client = await a_user(pool, name="Cleo Client", role="client")
    worker = await a_user(pool, name="Will Worker", role="worker")
    project_id = await a_project(pool, client.id, title="Data pipeline")
    paid = PaymentCompleted(
        payment_id=uuid.uuid4(), booking_id=uuid.uuid4(), escrow_id=uuid.uuid4(),
        project_id=project_id, client_id=client.id, worker_id=worker.id, amount_cents=1005,
        fee_cents=101, net_cents=904, currency="USD", stripe_payment_intent_id="pi_1",
    )  # fmt: skip
    event = new_event(paid, aggregate_id=project_id)

    class RefusingTheClient:
        async def send(self, email: OutgoingEmail) -> None:
            if email.to == client.email:
                raise EmailRejected("550 5.1.1 no such mailbox")
            await SmtpMailer(deps.settings, timeout_s=2).send(email)

    deps = deps_for(mongo_db, smtp_port=smtp.port)
    deps = AgentDeps(deps.settings, mongo_db, RefusingTheClient(), QUICK)

    with pytest.raises(PoisonEvent, match=f"{event.event_id}:payment_completed:{client.id}"):
        await Notifier(deps, pool=pool).notify(event)

    assert len(smtp.to(worker.email)) == 1
    assert smtp.to(client.email) == []
    assert len(await in_app(mongo_db, client)) == 1
    assert len(await in_app(mongo_db, worker)) == 1


async def test_smtp_down_dead_letters_the_event_and_leaves_the_email_to_a_retry(
    mongo_db: MongoDatabase, smtp: MailCapture, pool: asyncpg.Pool
) -> None:
    event, _, worker = await a_review(pool)
    down = Notifier(deps_for(mongo_db, smtp_port=free_port()), pool=pool)

    with pytest.raises(PoisonEvent, match="review_received email: gave up after 3 attempts"):
        await down.notify(event)

    # The in-app part is done; the email claim was given back, so a replay sends the email.
    assert len(await in_app(mongo_db, worker)) == 1
    assert await mongo_db.email_log.count_documents({}) == 0
    await Notifier(deps_for(mongo_db, smtp_port=smtp.port), pool=pool).notify(event)
    assert len(smtp.to(worker.email)) == 1
    assert len(await in_app(mongo_db, worker)) == 1


async def test_postgresql_down_is_retried_then_dead_lettered(mongo_db: MongoDatabase) -> None:
    event = user_registered()
    deps = deps_for(mongo_db, smtp_port=free_port())
    settings = deps.settings.model_copy(
        update={"database_url": f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"}
    )
    notifier = Notifier(AgentDeps(settings, mongo_db, deps.mailer, QUICK))
    with pytest.raises(PoisonEvent, match=r"user\.registered context: gave up after 3 attempts"):
        await notifier.notify(event)
    assert await mongo_db[NOTIFICATIONS].count_documents({}) == 0


async def test_a_refused_recipient_is_poison_at_once(
    mongo_db: MongoDatabase, pool: asyncpg.Pool
) -> None:
    deps = deps_for(mongo_db, smtp_port=free_port(), mailer=RejectingMailer())
    with pytest.raises(PoisonEvent, match="rejected: 550"):
        await Notifier(deps, pool=pool).notify(user_registered())
    assert await mongo_db.email_log.count_documents({}) == 0


async def test_an_email_another_worker_is_sending_is_not_sent_twice(
    mongo_db: MongoDatabase, smtp: MailCapture, pool: asyncpg.Pool
) -> None:
    event = user_registered()
    await mongo_db.email_log.insert_one(
        {
            "_id": f"{event.event_id}:welcome:{event.data['user_id']}:email",
            "status": "sending",
            "token": "someone-else",
            "claimedAt": datetime.now(UTC),
            "attempts": 1,
        }
    )
    with pytest.raises(PoisonEvent, match="being sent by another worker"):
        await Notifier(deps_for(mongo_db, smtp_port=smtp.port), pool=pool).notify(event)
    assert smtp.to(event.data["email"]) == []


async def test_the_claim_of_a_worker_that_died_mid_send_is_taken_over(
    mongo_db: MongoDatabase, smtp: MailCapture, pool: asyncpg.Pool
) -> None:
    event = user_registered()
    await mongo_db.email_log.insert_one(
        {
            "_id": f"{event.event_id}:welcome:{event.data['user_id']}:email",
            "status": "sending",
            "token": "dead-worker",
            "claimedAt": datetime.now(UTC) - EMAIL_CLAIM_LEASE - timedelta(seconds=1),
            "attempts": 1,
        }
    )
    await Notifier(deps_for(mongo_db, smtp_port=smtp.port), pool=pool).notify(event)
    assert len(smtp.to(event.data["email"])) == 1


async def test_a_registration_without_an_email_is_poison_before_any_query(
    mongo_db: MongoDatabase,
) -> None:
    event = user_registered()
    broken = Event.model_validate(
        {**event.model_dump(), "data": {k: v for k, v in event.data.items() if k != "email"}}
    )
    # No pool and no reachable PostgreSQL: the record is checked first.
    notifier = Notifier(deps_for(mongo_db, smtp_port=free_port()))
    with pytest.raises(PoisonEvent, match=r"user\.registered data invalid"):
        await notifier.notify(broken)
