"""End to end through Kafka: outbox → relay → topic → the real Faust worker (a subprocess) →
MongoDB and SMTP. One worker serves the whole module: it takes seconds to join its group."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from asgi_lifespan import LifespanManager
from motor.motor_asyncio import AsyncIOMotorClient

from bridges.relay import OutboxRelay
from infrastructure.mongo import MongoDatabase, create_mongo_client, mongo_database
from infrastructure.processes import ManagedProcess
from infrastructure.settings import Settings
from streams.events import Event, new_event
from streams.reviews import ReviewCreated
from streams.topics import dead_letter_topic, topic_of
from tests.bridges.support import append_events, header, read_topics
from tests.conftest import APP_LIFESPAN_S, wait_until
from tests.databases import fresh_database
from tests.mail import MailCapture
from tests.streams.factories import user_registered

REPO = Path(__file__).resolve().parents[2]
# Joining the consumer group and the first assignment take a few seconds on Tansu.
FIRST_EVENT_DEADLINE_S = 60.0


@dataclass
class Pipeline:
    settings: Settings
    mail: MailCapture
    mongo: MongoDatabase
    worker: ManagedProcess
    client: AsyncIOMotorClient[dict[str, Any]]

    def worker_log(self) -> str:
        assert self.worker.log_path is not None
        return self.worker.log_path.read_text(errors="replace")[-4000:]

    async def publish_raw(self, value: bytes, *, key: bytes, event_type: str) -> None:
        """Put bytes on an event topic the way a buggy or replaying producer might."""
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(
                topic_of(event_type, self.settings.topic_prefix), value=value, key=key
            )
        finally:
            await producer.stop()

    async def welcomed(self, event: Event, *, timeout: float = 30.0) -> None:
        """Wait until `event`'s welcome email has arrived."""
        await self.mail_arrives(event.data["email"], timeout=timeout)

    async def mail_arrives(self, address: str, *, timeout: float) -> None:
        def arrived() -> bool:
            if not self.worker.alive:
                raise AssertionError(f"the worker died; its log:\n{self.worker_log()}")
            return bool(self.mail.to(address))

        try:
            await wait_until(arrived, timeout=timeout, what=f"mail to {address}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; worker log:\n{self.worker_log()}") from None


def ours(record: Any) -> bool:
    """A dead letter of the notifications agent of the users stream."""
    return header(record, "dead_letter_agent") == "notifications.welcome"


def _env(settings: Settings, names: list[str]) -> dict[str, str]:
    values = settings.model_dump()
    return {f"TULIFO_{name.upper()}": str(values[name]) for name in names}


@pytest.fixture(scope="module")
async def pipeline(
    kafka: str, mongo_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Pipeline]:
    tmp = tmp_path_factory.mktemp("pipeline")
    mail = MailCapture()
    mail.start()
    run = uuid.uuid4().hex[:8]
    async with fresh_database() as database_url:
        settings = Settings(
            env="test",
            database_url=database_url,
            redis_url=redis_url,
            bcrypt_rounds=4,
            # Other runs on this machine share the Redis database of registration counters.
            register_max_per_ip=1_000_000,
            kafka_bootstrap=kafka,
            mongo_url=mongo_url,
            mongo_database=f"pipeline_{run}",
            rabbitmq_url=None,
            smtp_host=mail.host,
            smtp_port=mail.port,
            topic_prefix=f"p{run}",
            faust_app_id=f"tulifo-test-{run}",
            faust_data_dir=str(tmp / "faust"),
            log_json=False,
            relay_poll_seconds=0.1,
        )
        env = {
            **os.environ,
            **_env(
                settings,
                [
                    "env",
                    "database_url",
                    "kafka_bootstrap",
                    "mongo_url",
                    "mongo_database",
                    "smtp_host",
                    "smtp_port",
                    "topic_prefix",
                    "faust_app_id",
                    "faust_data_dir",
                    "log_json",
                ],
            ),
        }
        worker = ManagedProcess.spawn(
            "worker",
            [sys.executable, "-m", "streams.worker"],
            env=env,
            cwd=REPO,
            log_path=tmp / "worker.log",
        )
        relay = OutboxRelay(settings)
        relay_task = asyncio.create_task(relay.run())
        client = create_mongo_client(settings)
        try:
            yield Pipeline(settings, mail, mongo_database(client, settings), worker, client)
        finally:
            await relay.stop()
            await relay_task
            worker.stop()
            client.close()
            mail.stop()


async def test_a_registered_user_is_welcomed_in_app_and_by_email(pipeline: Pipeline) -> None:
    event = user_registered(role="client")
    await append_events(pipeline.settings.database_url, [event])

    await pipeline.welcomed(event, timeout=FIRST_EVENT_DEADLINE_S)
    [mail] = pipeline.mail.to(event.data["email"])
    assert mail["Subject"] == "Welcome to Tulifo Gig"
    assert str(event.event_id) in mail["Message-ID"]
    [text, html] = mail.get_payload()
    assert "Post your first project" in text.get_payload(decode=True).decode()
    assert html.get_content_type() == "text/html"
    # The notification is written before the email is sent.
    notification = await pipeline.mongo.flexwork_notifications.find_one(
        {"eventId": str(event.event_id)}
    )
    assert notification is not None
    assert notification["_id"] == f"{event.event_id}:welcome:{event.data['user_id']}:in_app"
    assert notification["kind"] == "notification"
    assert notification["userId"] == event.data["user_id"]
    assert notification["type"] == "welcome"
    assert notification["read"] is False
    assert notification["createdAt"] == event.occurred_at.replace(
        microsecond=event.occurred_at.microsecond // 1000 * 1000  # BSON dates hold milliseconds
    )
    indexes = await pipeline.mongo.flexwork_notifications.index_information()
    assert indexes["user_recent"]["key"] == [("userId", 1), ("createdAt", -1), ("_id", -1)]


async def test_registering_through_the_api_welcomes_the_new_user(pipeline: Pipeline) -> None:
    from api.app import create_app

    app = create_app(pipeline.settings)
    email = f"api-{uuid.uuid4().hex[:10]}@example.com"
    async with (
        LifespanManager(app, startup_timeout=APP_LIFESPAN_S, shutdown_timeout=APP_LIFESPAN_S),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as client,
    ):
        response = await client.post(
            "/api/auth/register",
            json={
                "email": email,
                "password": "correct horse battery",
                "name": "Bo",
                "role": "worker",
            },
        )
    assert response.status_code == 201, response.text
    user_id = response.json()["data"]["user"]["id"]

    await pipeline.mail_arrives(email, timeout=FIRST_EVENT_DEADLINE_S)
    [mail] = pipeline.mail.to(email)
    assert "Hi Bo" in mail.get_payload()[0].get_payload(decode=True).decode()
    assert await pipeline.mongo.flexwork_notifications.count_documents({"userId": user_id}) == 1


async def test_a_redelivered_event_notifies_and_emails_once(pipeline: Pipeline) -> None:
    event = user_registered()
    await append_events(pipeline.settings.database_url, [event])
    await pipeline.welcomed(event, timeout=FIRST_EVENT_DEADLINE_S)

    # The same envelope again, twice, as a relay retry or a replay would deliver it; then a
    # different user on the same key (so the same partition, behind them) to know they were read.
    again = json.dumps(event.model_dump(mode="json")).encode()
    key = event.aggregate_id.encode()
    await pipeline.publish_raw(again, key=key, event_type="user.registered")
    await pipeline.publish_raw(again, key=key, event_type="user.registered")
    behind = user_registered()
    await pipeline.publish_raw(
        json.dumps(behind.model_dump(mode="json")).encode(), key=key, event_type="user.registered"
    )
    await pipeline.welcomed(behind)

    assert len(pipeline.mail.to(event.data["email"])) == 1
    mongo = pipeline.mongo
    user_id = event.data["user_id"]
    assert await mongo.flexwork_notifications.count_documents({"userId": user_id}) == 1
    claim_id = f"{event.event_id}:welcome:{user_id}:email"
    assert await mongo.email_log.count_documents({"_id": claim_id, "status": "sent"}) == 1


async def test_a_review_reaches_the_reviewee_by_email_and_in_app(pipeline: Pipeline) -> None:
    client_id, worker_id, project_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    worker_email = f"worker-{worker_id.hex[:10]}@example.com"
    conn = await asyncpg.connect(pipeline.settings.database_url)
    try:
        for user_id, email, role, name in (
            (client_id, f"client-{client_id.hex[:10]}@example.com", "client", "Cleo"),
            (worker_id, worker_email, "worker", "Will"),
        ):
            await conn.execute(
                "INSERT INTO users (id, email, password_hash, role, name)"
                " VALUES ($1, $2, 'x', $3, $4)",
                user_id,
                email,
                role,
                name,
            )
        await conn.execute(
            "INSERT INTO projects (id, client_id, title, budget_cents, currency)"
            " VALUES ($1, $2, 'Logo & <brand>', 50000, 'USD')",
            project_id,
            client_id,
        )
    finally:
        await conn.close()
    review = ReviewCreated(
        review_id=uuid.uuid4(),
        project_id=project_id,
        reviewer_id=client_id,
        reviewee_id=worker_id,
        reviewee_role="worker",
        rating=4,
    )
    event = new_event(review, aggregate_id=worker_id, actor_id=client_id)
    await append_events(pipeline.settings.database_url, [event])

    await pipeline.mail_arrives(worker_email, timeout=FIRST_EVENT_DEADLINE_S)
    [mail] = pipeline.mail.to(worker_email)
    assert mail["Subject"] == "You received a review"
    [text, html] = mail.get_payload()
    assert "Cleo rated you 4 of 5 for “Logo & <brand>”." in text.get_payload(decode=True).decode()
    assert "“Logo &amp; &lt;brand&gt;”" in html.get_payload(decode=True).decode()
    [notification] = [
        n async for n in pipeline.mongo.flexwork_notifications.find({"userId": str(worker_id)})
    ]
    assert notification["type"] == "review_received"
    assert notification["eventId"] == str(event.event_id)


async def test_poison_is_dead_lettered_with_its_reason_and_the_partition_moves_on(
    pipeline: Pipeline,
) -> None:
    key = uuid.uuid4().hex.encode()
    garbage = b"\xff not json at all " + key
    wrong_shape = json.dumps({"hello": "world", "marker": key.decode()}).encode()
    bad_data = user_registered().model_dump(mode="json")
    bad_data["data"].pop("email")
    bad_data["data"]["marker"] = key.decode()
    for value in (garbage, wrong_shape, json.dumps(bad_data).encode()):
        await pipeline.publish_raw(value, key=key, event_type="user.registered")
    good = user_registered()
    await pipeline.publish_raw(
        json.dumps(good.model_dump(mode="json")).encode(), key=key, event_type="user.registered"
    )

    await pipeline.welcomed(good, timeout=FIRST_EVENT_DEADLINE_S)
    parked = await read_topics(
        pipeline.settings.kafka_bootstrap,
        [dead_letter_topic(pipeline.settings.topic_prefix)],
        until=lambda got: len([r for r in got if r.key == key and ours(r)]) >= 3,
    )
    # The matching and search projections read the users stream too, and park the same poison.
    mine = sorted((r for r in parked if r.key == key and ours(r)), key=lambda r: r.offset)
    assert [r.value for r in mine] == [garbage, wrong_shape, json.dumps(bad_data).encode()]
    reasons = [header(r, "dead_letter_reason") or "" for r in mine]
    assert reasons[0].startswith("not JSON")
    assert "not an event envelope: event_id: Field required" in reasons[1]
    assert "user.registered data invalid" in reasons[2]
    for record in mine:
        assert header(record, "original_topic") == topic_of(
            "user.registered", pipeline.settings.topic_prefix
        )
        assert header(record, "original_partition") is not None
        assert header(record, "original_offset") is not None
        assert header(record, "dead_letter_agent") == "notifications.welcome"
    offsets = [int(header(r, "original_offset") or -1) for r in mine]
    assert offsets == sorted(offsets) and len(set(offsets)) == 3


async def test_poison_in_a_pack_is_dead_lettered_alone_and_its_neighbours_go_on(
    pipeline: Pipeline,
) -> None:
    before, after = user_registered(), user_registered()
    bad = user_registered().model_dump(mode="json")
    bad["data"].pop("email")
    pack = [before.model_dump(mode="json"), bad, after.model_dump(mode="json")]
    await pipeline.publish_raw(
        json.dumps(pack).encode(), key=b"a-pack", event_type="user.registered"
    )

    await pipeline.welcomed(before, timeout=FIRST_EVENT_DEADLINE_S)
    await pipeline.welcomed(after)
    parked = await read_topics(
        pipeline.settings.kafka_bootstrap,
        [dead_letter_topic(pipeline.settings.topic_prefix)],
        until=lambda got: any(header(r, "event_id") == bad["event_id"] and ours(r) for r in got),
    )
    [record] = [r for r in parked if header(r, "event_id") == bad["event_id"] and ours(r)]
    assert json.loads(record.value) == bad  # the one event, not the pack
    assert record.key == bad["aggregate_id"].encode()
    assert header(record, "original_index") == "1"
    assert header(record, "event_type") == "user.registered"
    assert "user.registered data invalid" in (header(record, "dead_letter_reason") or "")
