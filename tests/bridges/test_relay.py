"""The outbox relay publishes committed events to Kafka in order, marks them, and survives Kafka
and its own peers coming and going."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter as Tally
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import REGISTRY

from bridges.relay import OutboxRelay
from infrastructure.embedded import start_tansu
from infrastructure.processes import free_port
from infrastructure.settings import Settings
from streams.packing import PACK_MAX_EVENTS, partition_of
from streams.topics import dead_letter_topic, stream_topic, topic_of
from tests.bridges.support import (
    Delivered,
    append_events,
    header,
    outbox_rows,
    published_event_ids,
    read_events,
    read_topics,
)
from tests.conftest import wait_until
from tests.streams.factories import profile_updated, user_registered


@asynccontextmanager
async def running(relay: OutboxRelay) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(relay.run())
    try:
        yield task
    finally:
        await relay.stop()
        await task


def published_total(event_type: str) -> float:
    value = REGISTRY.get_sample_value(
        "tulifo_relay_events_published_total", {"event_type": event_type}
    )
    return value or 0.0


async def test_rows_are_published_in_order_with_key_and_headers_then_marked(
    relay_settings: Settings, kafka: str
) -> None:
    settings = relay_settings.model_copy(update={"relay_batch_size": 3})
    ann, bob = uuid.uuid4(), uuid.uuid4()
    events = [
        user_registered(user_id=ann),
        user_registered(user_id=bob),
        profile_updated(user_id=ann),
        user_registered(user_id=ann),
        profile_updated(user_id=bob),
        user_registered(user_id=bob),
        user_registered(user_id=ann),
    ]
    await append_events(settings.database_url, events)
    before = published_total("user.registered")
    relay = OutboxRelay(settings)
    await relay.start()
    try:
        assert await relay.publish_pending() == 3
        rows = await outbox_rows(settings.database_url)
        assert [row["published_at"] is not None for row in rows] == [True] * 3 + [False] * 4
        assert await relay.publish_pending() == 3
        assert await relay.publish_pending() == 1
        assert await relay.publish_pending() == 0
    finally:
        await relay.stop()

    assert await published_event_ids(settings.database_url) == {e.event_id for e in events}
    assert published_total("user.registered") - before == 5
    topics = [stream_topic("users", settings.topic_prefix)]
    delivered = await read_events(kafka, topics, count=len(events))
    by_id = {uuid.UUID(one.event_id): one for one in delivered}
    assert set(by_id) == {event.event_id for event in events}
    for event in events:
        one = by_id[event.event_id]
        assert one.topic == topic_of(event.type, settings.topic_prefix)
        assert one.partition == partition_of(event.aggregate_id, settings.topic_partitions)
        assert one.event == {**event.model_dump(mode="json"), "sequence": one.event["sequence"]}
    # A batch is packed per partition: one message per partition it touched, saying how many.
    for record in await read_topics(kafka, topics, until=lambda got: len(got) >= 1):
        assert record.key is None
        assert int(header(record, "event_count") or 0) == len(json.loads(record.value))
    # Each aggregate's events are numbered 1, 2, 3, … in the order they were written.
    for user in (ann, bob):
        mine = [e.event_id for e in events if e.aggregate_id == str(user)]
        numbers = [by_id[i].event["sequence"] for i in mine]
        assert numbers == list(range(1, len(mine) + 1))
    # Each aggregate's events reach its partition in the order they were written.
    for user in (ann, bob):
        for topic in topics:
            written = [e.event_id for e in events if e.aggregate_id == str(user)]
            written = [i for i in written if by_id[i].topic == topic]
            on_partition = sorted(written, key=lambda i: by_id[i].position)
            assert on_partition == written
            assert len({by_id[i].partition for i in written}) == 1


async def test_a_batch_is_packed_per_partition_within_the_cap(
    relay_settings: Settings, kafka: str
) -> None:
    settings = relay_settings.model_copy(update={"relay_batch_size": 500})
    ann = uuid.uuid4()
    events = [user_registered(user_id=ann)] + [profile_updated(user_id=ann) for _ in range(449)]
    others = [user_registered() for _ in range(30)]
    await append_events(settings.database_url, events + others)
    relay = OutboxRelay(settings)
    await relay.start()
    try:
        assert await relay.publish_pending() == 480
    finally:
        await relay.stop()
    topic = stream_topic("users", settings.topic_prefix)
    delivered = await read_events(kafka, [topic], count=480)
    mine = sorted((one for one in delivered if one.key == str(ann).encode()), key=_position)
    # One aggregate: one partition, in order, in packs of at most PACK_MAX_EVENTS.
    assert [one.event["sequence"] for one in mine] == list(range(1, 451))
    assert {one.partition for one in mine} == {partition_of(str(ann), settings.topic_partitions)}
    pack_sizes = Tally(one.offset for one in mine)
    assert sorted(pack_sizes.values()) == sorted([PACK_MAX_EVENTS, PACK_MAX_EVENTS, 50])
    assert {uuid.UUID(one.event_id) for one in delivered} == {e.event_id for e in events + others}


def _position(one: Delivered) -> tuple[int, int]:
    return one.position


async def test_a_row_of_unknown_type_is_dead_lettered_and_the_rest_flows(
    relay_settings: Settings, kafka: str
) -> None:
    conn = await asyncpg.connect(relay_settings.database_url)
    try:
        await conn.execute(
            """INSERT INTO outbox (event_id, event_type, key, payload)
               VALUES ($1, 'nonsense.happened', 'k1', '{"x": 1}')""",
            uuid.uuid4(),
        )
    finally:
        await conn.close()
    good = user_registered()
    await append_events(relay_settings.database_url, [good])
    relay = OutboxRelay(relay_settings)
    await relay.start()
    try:
        assert await relay.publish_pending() == 2
    finally:
        await relay.stop()

    assert all(row["published_at"] for row in await outbox_rows(relay_settings.database_url))
    [parked] = await read_topics(
        kafka, [dead_letter_topic(relay_settings.topic_prefix)], until=lambda got: len(got) >= 1
    )
    assert parked.key == b"k1"
    assert "unknown event type 'nonsense.happened'" in (header(parked, "dead_letter_reason") or "")
    [published] = await read_events(
        kafka, [topic_of("user.registered", relay_settings.topic_prefix)], count=1
    )
    assert published.event_id == str(good.event_id)


async def test_a_commit_wakes_the_relay_without_waiting_for_the_poll(
    relay_settings: Settings,
) -> None:
    # A poll interval far beyond the deadline: only the NOTIFY can make the row flow in time.
    relay = OutboxRelay(relay_settings.model_copy(update={"relay_poll_seconds": 120}))
    async with running(relay):
        await wait_until(lambda: relay.is_leader, what="the relay to lead")
        event = user_registered()
        await append_events(relay_settings.database_url, [event])
        await wait_until(
            lambda: relay.published == 1, timeout=10, what="the NOTIFY to wake the relay"
        )
    assert await published_event_ids(relay_settings.database_url) == {event.event_id}


async def test_rows_written_while_kafka_is_down_flow_when_it_is_back(
    relay_settings: Settings,
) -> None:
    port = free_port()
    broker, bootstrap = start_tansu(port)
    # Three partitions, unlike Tansu's auto-created topics: the relay must create them itself.
    settings = relay_settings.model_copy(
        update={"kafka_bootstrap": bootstrap, "topic_partitions": 3}
    )
    relay = OutboxRelay(settings, ack_timeout_s=2, max_backoff_s=0.5)
    try:
        async with running(relay):
            first = user_registered()
            await append_events(settings.database_url, [first])
            await wait_until(lambda: relay.published == 1, what="the first event")

            broker.kill()  # as a crash would; a clean stop drains clients for ~5 s
            during = [user_registered() for _ in range(20)]
            await append_events(settings.database_url, during)  # writes do not need Kafka
            await wait_until(lambda: relay.failures > 0, what="the relay to notice Kafka is down")
            await wait_until(
                lambda: (REGISTRY.get_sample_value("tulifo_relay_lag_seconds") or 0) > 0,
                what="the lag gauge to show the backlog",
            )
            assert await published_event_ids(settings.database_url) == {first.event_id}

            broker, _ = await asyncio.to_thread(start_tansu, port)  # new, empty, in memory
            # The new broker lost `first` with the old one: the relay publishes it again too.
            await wait_until(
                lambda: relay.published == 2 + len(during), timeout=30, what="the backlog"
            )

        assert await published_event_ids(settings.database_url) == {first.event_id} | {
            e.event_id for e in during
        }
        topic = topic_of("user.registered", settings.topic_prefix)
        delivered = await read_events(bootstrap, [topic], count=1 + len(during))
        arrived = {uuid.UUID(one.event_id) for one in delivered}
        assert arrived == {first.event_id} | {e.event_id for e in during}
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            [description] = await admin.describe_topics([topic])
        finally:
            await admin.close()
        assert len(description["partitions"]) == 3
    finally:
        broker.kill()


async def test_only_the_leader_publishes_and_a_standby_takes_over_when_it_stops(
    relay_settings: Settings,
) -> None:
    leader, standby = OutboxRelay(relay_settings), OutboxRelay(relay_settings)
    async with running(leader):
        await wait_until(lambda: leader.is_leader, what="the first relay to lead")
        async with running(standby):
            await wait_until(lambda: standby.standby, what="the second relay to stand by")
            first = [user_registered() for _ in range(5)]
            await append_events(relay_settings.database_url, first)
            await wait_until(lambda: leader.published == 5, what="the leader to publish")
            assert not standby.is_leader
            assert standby.published == 0

            await leader.stop()
            await wait_until(lambda: standby.is_leader, what="the standby to take over")
            second = [user_registered() for _ in range(5)]
            await append_events(relay_settings.database_url, second)
            await wait_until(lambda: standby.published == 5, what="the new leader to publish")
    assert leader.published == 5
    assert await published_event_ids(relay_settings.database_url) == {
        e.event_id for e in first + second
    }


async def test_a_standby_takes_over_when_the_leaders_session_dies(
    relay_settings: Settings,
) -> None:
    # The old leader waits 5 s before reconnecting, so the lock can only go to the standby.
    leader = OutboxRelay(relay_settings, first_backoff_s=5, max_backoff_s=5)
    standby = OutboxRelay(relay_settings)
    async with running(leader):
        await wait_until(lambda: leader.is_leader, what="the first relay to lead")
        async with running(standby):
            await wait_until(lambda: standby.standby, what="the second relay to stand by")
            # What PostgreSQL sees when a leader crashes: its session ends, its lock goes with it.
            admin = await asyncpg.connect(relay_settings.database_url)
            try:
                killed = await admin.fetchval(
                    # Locks are per database; other runs' relays hold the same id elsewhere.
                    """SELECT count(pg_terminate_backend(pid)) FROM pg_locks
                        WHERE locktype = 'advisory' AND granted AND objid = $1
                          AND database = (SELECT oid FROM pg_database
                                           WHERE datname = current_database())""",
                    leader.lock_id,
                )
            finally:
                await admin.close()
            assert killed == 1
            await wait_until(lambda: standby.is_leader, what="the standby to take over")
            events = [user_registered() for _ in range(3)]
            await append_events(relay_settings.database_url, events)
            await wait_until(lambda: standby.published == 3, what="the new leader to publish")
    assert leader.published == 0
    assert await published_event_ids(relay_settings.database_url) == {e.event_id for e in events}
