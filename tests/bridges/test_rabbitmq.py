"""The RabbitMQ feed: every event committed to the outbox reaches the `tulifo.events` exchange as
one persistent AMQP message, routed by its type and identified by its event_id, through a real
relay, Tansu and the machine's RabbitMQ. A dropped connection or a killed bridge loses nothing
(duplicates carry the same message_id); poison is dead-lettered and the partition goes on."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aio_pika
import orjson
import pytest
from aio_pika.abc import AbstractIncomingMessage
from aiokafka import AIOKafkaProducer

from bridges.kafka import ensure_topics
from bridges.outbox import append_events
from bridges.rabbitmq import AGENT_NAME, BridgeRefused, RabbitBridge, to_outgoing
from bridges.relay import OutboxRelay
from infrastructure.database import create_pool, unit_of_work
from infrastructure.processes import ManagedProcess
from infrastructure.settings import Settings
from streams.events import Event
from streams.packing import partition_of
from streams.topics import dead_letter_topic, stream_topic
from tests.bridges.support import header, read_topics, unpacked
from tests.conftest import wait_until
from tests.streams.factories import profile_updated, user_registered
from tests.streams.gig_factories import random_mix

RABBITMQ_URL = os.environ.get("TULIFO_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
REPO = Path(__file__).resolve().parents[2]
# Generous: two vCPUs shared with other test runs.
ARRIVAL_S = 120.0


@pytest.fixture
def bridge_settings(relay_settings: Settings) -> Settings:
    """The relay's settings (a database and topics of this test's own) plus an exchange, a
    consumer group and an AMQP connection name of its own, so parallel runs never meet."""
    run = uuid.uuid4().hex[:8]
    return relay_settings.model_copy(
        update={
            "rabbitmq_url": RABBITMQ_URL,
            "rabbitmq_exchange": f"tulifo.events.test-{run}",
            "faust_app_id": f"tulifo-test-{run}",
            "service_name": f"tulifo-test-{run}",
        }
    )


class Feed:
    """A queue bound with `#` to the test's exchange: what a subscriber of the feed receives."""

    def __init__(self) -> None:
        self.messages: list[AbstractIncomingMessage] = []

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        self.messages.append(message)

    def ids(self) -> set[str]:
        return {str(m.message_id) for m in self.messages}

    def has_all(self, events: Sequence[Event]) -> bool:
        return {str(e.event_id) for e in events} <= self.ids()

    def assert_duplicates_are_identical(self) -> None:
        first: dict[str, AbstractIncomingMessage] = {}
        for message in self.messages:
            seen = first.setdefault(str(message.message_id), message)
            assert message.body == seen.body, f"{message.message_id} came back different"
            assert message.routing_key == seen.routing_key


@pytest.fixture
async def feed(bridge_settings: Settings) -> AsyncIterator[Feed]:
    connection = await aio_pika.connect(
        RABBITMQ_URL, client_properties={"connection_name": "tulifo-test-subscriber"}
    )
    channel = await connection.channel()
    exchange = await channel.declare_exchange(
        bridge_settings.rabbitmq_exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue(f"{bridge_settings.rabbitmq_exchange}.all", durable=True)
    await queue.bind(exchange, "#")
    received = Feed()
    await queue.consume(received.on_message, no_ack=True)
    try:
        yield received
    finally:
        await queue.delete(if_unused=False, if_empty=False)
        await exchange.delete()
        await connection.close()


@asynccontextmanager
async def running(*tasks: RabbitBridge | OutboxRelay) -> AsyncIterator[None]:
    started = [asyncio.create_task(task.run()) for task in tasks]
    try:
        yield
    finally:
        for task in tasks:
            await task.stop()
        await asyncio.gather(*started)


async def commit_to_outbox(database_url: str, events: Sequence[Event], *, chunk: int = 200) -> None:
    """Commit `events` as the write side does, `chunk` to a transaction (so they pack)."""
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        for start in range(0, len(events), chunk):
            async with unit_of_work(pool) as conn:
                await append_events(conn, events[start : start + chunk])
    finally:
        await pool.close()


def some_events(seed: int, gigs: int) -> list[Event]:
    users = [user_registered() for _ in range(20)]
    profiles = [profile_updated(user_id=uuid.UUID(e.aggregate_id)) for e in users[:10]]
    return [*users, *profiles, *random_mix(random.Random(seed), gigs=gigs)]


def close_connections(connection_name: str) -> int:
    """Close, from the server's side, every AMQP connection that calls itself
    `connection_name`; returns how many there were."""
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "--no-table-headers", "pid", "client_properties"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    pids = [
        line.split("\t", 1)[0]
        for line in listed.stdout.splitlines()
        if f'{{"connection_name","{connection_name}"}}' in line
    ]
    for pid in pids:
        subprocess.run(
            ["rabbitmqctl", "-q", "close_connection", pid, "closed by the bridge's test"],
            check=True,
            timeout=60,
        )
    return len(pids)


# --- what a subscriber gets ------------------------------------------------------------------


async def test_every_outbox_event_arrives_once_per_envelope_routed_by_its_type(
    bridge_settings: Settings, feed: Feed
) -> None:
    events = some_events(1, gigs=60)
    await commit_to_outbox(bridge_settings.database_url, events)
    async with running(OutboxRelay(bridge_settings), RabbitBridge(bridge_settings)):
        await wait_until(lambda: feed.has_all(events), timeout=ARRIVAL_S, what="every event")

    # The relay packed them: fewer Kafka messages than events, some holding many.
    topics = [stream_topic(s, bridge_settings.topic_prefix) for s in ("gigs", "users", "reviews")]
    records = await read_topics(
        bridge_settings.kafka_bootstrap, topics, until=lambda got: len(unpacked(got)) >= len(events)
    )
    assert any(header(r, "event_count") not in (None, "1") for r in records)

    by_id = {str(m.message_id): m for m in feed.messages}
    assert len(by_id) == len(events)
    for event in events:
        message = by_id[str(event.event_id)]
        assert message.routing_key == event.type
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert message.content_type == "application/json"
        assert message.type == event.type
        assert message.headers == {"event_type": event.type, "schema_version": event.version}
        body = json.loads(message.body)
        assert body["event_id"] == str(event.event_id)
        assert body["type"] == event.type
        assert body["version"] == event.version
        assert body["aggregate_id"] == event.aggregate_id
        assert body["data"] == event.model_dump(mode="json")["data"]
        assert isinstance(body["sequence"], int)


async def test_the_bridge_refuses_to_start_when_rabbitmq_is_off(
    bridge_settings: Settings,
) -> None:
    with pytest.raises(BridgeRefused, match="TULIFO_RABBITMQ_URL is empty"):
        RabbitBridge(bridge_settings.model_copy(update={"rabbitmq_url": None}))


def test_tulifo_bridge_says_why_it_will_not_start_without_rabbitmq() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TULIFO_")}
    done = subprocess.run(
        [sys.executable, "-m", "infrastructure.cli", "bridge"],
        env={**env, "TULIFO_RABBITMQ_URL": ""},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "tulifo bridge: TULIFO_RABBITMQ_URL is empty" in done.stderr


# --- failures ---------------------------------------------------------------------------------


async def test_a_connection_closed_by_rabbitmq_mid_stream_loses_nothing(
    bridge_settings: Settings, feed: Feed
) -> None:
    events = some_events(2, gigs=600)
    first, during, after = len(events) // 4, len(events) // 2, len(events)
    bridge = RabbitBridge(bridge_settings, first_backoff_s=0.1)
    name = f"{bridge_settings.service_name}-{AGENT_NAME}"
    database = bridge_settings.database_url
    async with running(OutboxRelay(bridge_settings), bridge):
        await commit_to_outbox(database, events[:first])
        await wait_until(lambda: bridge.bridged > 0, timeout=ARRIVAL_S, what="a first event")
        writing = asyncio.create_task(commit_to_outbox(database, events[first:during], chunk=10))
        assert await asyncio.to_thread(close_connections, name) == 1
        await writing
        # Whatever was in flight, these find the connection gone: the bridge must reconnect.
        await commit_to_outbox(database, events[during:after], chunk=10)
        await wait_until(lambda: feed.has_all(events), timeout=ARRIVAL_S, what="every event")
    assert bridge.connections >= 2  # it noticed, reconnected and published the rest
    feed.assert_duplicates_are_identical()


def spawn_bridge(settings: Settings, directory: Path, name: str) -> ManagedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TULIFO_")}
    env.update(
        TULIFO_ENV="test",
        TULIFO_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        TULIFO_TOPIC_PREFIX=settings.topic_prefix,
        TULIFO_TOPIC_PARTITIONS=str(settings.topic_partitions),
        TULIFO_FAUST_APP_ID=settings.faust_app_id,
        TULIFO_SERVICE_NAME=settings.service_name,
        TULIFO_RABBITMQ_URL=settings.rabbitmq_url or "",
        TULIFO_RABBITMQ_EXCHANGE=settings.rabbitmq_exchange,
        TULIFO_LOG_JSON="false",
    )
    return ManagedProcess.spawn(
        name,
        [sys.executable, "-m", "bridges.rabbitmq"],
        env=env,
        cwd=REPO,
        log_path=directory / f"{name}.log",
    )


async def test_a_bridge_killed_mid_stream_loses_nothing_on_its_restart(
    bridge_settings: Settings, feed: Feed, tmp_path: Path
) -> None:
    events = some_events(3, gigs=1_200)
    half = len(events) // 2
    bridges = [spawn_bridge(bridge_settings, tmp_path, "bridge1")]
    try:
        async with running(OutboxRelay(bridge_settings)):
            await commit_to_outbox(bridge_settings.database_url, events[:half])
            await wait_until(lambda: feed.messages, timeout=ARRIVAL_S, what="a first event")
            bridges[0].kill()  # SIGKILL: confirms in flight, offsets uncommitted
            await commit_to_outbox(bridge_settings.database_url, events[half:])
            bridges.append(spawn_bridge(bridge_settings, tmp_path, "bridge2"))
            try:
                await wait_until(lambda: feed.has_all(events), timeout=ARRIVAL_S, what="all")
            except AssertionError as exc:
                logs = "\n".join((tmp_path / f"{b.name}.log").read_text()[-3000:] for b in bridges)
                raise AssertionError(f"{exc}: {len(feed.ids())}/{len(events)}\n{logs}") from None
    finally:
        for process in bridges:
            process.stop()
    feed.assert_duplicates_are_identical()


async def test_poison_is_dead_lettered_and_the_events_after_it_still_arrive(
    bridge_settings: Settings, feed: Feed
) -> None:
    prefix = bridge_settings.topic_prefix
    users = stream_topic("users", prefix)
    good = user_registered()
    after = [user_registered() for _ in range(40)]
    producer = AIOKafkaProducer(bootstrap_servers=bridge_settings.kafka_bootstrap)
    await producer.start()
    bridge = RabbitBridge(bridge_settings)
    try:
        await ensure_topics(bridge_settings)  # our partition count, not auto-creation's
        async with running(bridge):
            # Before the good events, on their partition: a message that is no JSON, and a
            # pack with one good envelope and one without an event_id.
            partition = partition_of(good.aggregate_id, bridge_settings.topic_partitions)
            await producer.send_and_wait(users, b"\xffnot json", partition=partition)
            envelope = good.model_dump(mode="json")
            pack = orjson.dumps([envelope, {"type": "user.registered", "data": {}}])
            await producer.send_and_wait(users, pack, partition=partition)
            await commit_to_outbox(bridge_settings.database_url, after)
            async with running(OutboxRelay(bridge_settings)):
                await wait_until(
                    lambda: feed.has_all([good, *after]), timeout=ARRIVAL_S, what="the good ones"
                )
    finally:
        await producer.stop()
    assert bridge.dead_lettered == 2

    dead = await read_topics(
        bridge_settings.kafka_bootstrap,
        [dead_letter_topic(prefix)],
        until=lambda got: len(got) >= 2,
        timeout=30,
    )
    by_index = {header(r, "original_index"): r for r in dead}
    whole, item = by_index[None], by_index["1"]
    assert whole.value == b"\xffnot json"
    assert "not JSON" in (header(whole, "dead_letter_reason") or "")
    assert json.loads(item.value) == {"type": "user.registered", "data": {}}
    assert "event_id" in (header(item, "dead_letter_reason") or "")
    for record in (whole, item):
        assert header(record, "dead_letter_agent") == AGENT_NAME
        assert header(record, "original_topic") == users
        assert header(record, "original_partition") == str(partition)


def test_the_feed_carries_a_message_sent_without_what_the_message_said() -> None:
    # Subscribers to the feed are other services, not the conversation's parties.
    envelope = {
        "event_id": str(uuid.uuid4()),
        "type": "message.sent",
        "version": 1,
        "aggregate_id": str(uuid.uuid4()),
        "data": {"message_id": str(uuid.uuid4()), "content": "my address is", "preview": "my ad"},
    }
    body = orjson.loads(to_outgoing(envelope, stream="messages").message.body)
    assert set(body["data"]) == {"message_id"}
    assert {k: v for k, v in body.items() if k != "data"} == {
        k: v for k, v in envelope.items() if k != "data"
    }
    # Other events go as the outbox wrote them.
    review = {**envelope, "type": "review.created", "data": {"comment": "great work"}}
    assert orjson.loads(to_outgoing(review, stream="reviews").message.body) == review
