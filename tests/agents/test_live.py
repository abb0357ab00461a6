"""The live agent's rules (agents/live.py): who each event is for, in the API's spelling, once,
and never a stall when Redis is gone."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from agents.live import (
    ADMIN_CHANNEL,
    REDIS_COOLDOWN_S,
    LivePublisher,
    addressees,
    channels_for,
    live_message,
)
from infrastructure.processes import free_port
from streams.escrow import EscrowRefunded, EscrowReleased
from streams.events import Event, PoisonEvent, new_event
from streams.projects import BidAccepted, ProjectStatusChanged
from streams.topics import dashboard_user_channel

CLIENT, WORKER, OTHER = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
PROJECT, HOLD = uuid.uuid4(), uuid.uuid4()


def released() -> Event:
    record = EscrowReleased(
        escrow_id=HOLD,
        booking_id=uuid.uuid4(),
        project_id=PROJECT,
        worker_id=WORKER,
        payout_id=uuid.uuid4(),
        amount_cents=1005,
        fee_cents=101,
        net_cents=904,
        currency="USD",
    )
    return new_event(record, aggregate_id=PROJECT)


def test_a_release_names_its_worker_and_the_hold_whose_client_is_looked_up() -> None:
    wanted = addressees(released())
    assert wanted.users == {WORKER}
    assert wanted.hold_id == HOLD


def test_a_refund_names_its_client_and_the_hold_whose_worker_is_looked_up() -> None:
    record = EscrowRefunded(
        escrow_id=HOLD,
        booking_id=uuid.uuid4(),
        project_id=PROJECT,
        client_id=CLIENT,
        refund_id=uuid.uuid4(),
        amount_cents=1005,
        currency="USD",
        reason="cancellation",
    )
    wanted = addressees(new_event(record, aggregate_id=PROJECT))
    assert wanted.users == {CLIENT}
    assert wanted.hold_id == HOLD


def test_an_acceptance_tells_the_winner_and_the_rejected_bidders() -> None:
    rejected = uuid.uuid4()
    record = BidAccepted(
        bid_id=uuid.uuid4(),
        project_id=PROJECT,
        client_id=CLIENT,
        worker_id=WORKER,
        amount_cents=1005,
        currency="USD",
        delivery_days=3,
        rejected_bid_ids=[rejected],
    )
    wanted = addressees(new_event(record, aggregate_id=PROJECT))
    assert wanted.users == {WORKER}
    assert wanted.rejected_bids == (rejected,)


def test_a_status_change_without_rejected_bids_is_for_admins_only() -> None:
    record = ProjectStatusChanged(
        project_id=PROJECT,
        client_id=CLIENT,
        worker_id=WORKER,
        from_status="in_progress",
        to_status="delivered",
    )
    wanted = addressees(new_event(record, aggregate_id=PROJECT))
    assert wanted.users == frozenset() and wanted.rejected_bids == ()
    assert channels_for(wanted.users) == [ADMIN_CHANNEL]


def test_a_record_that_is_not_its_type_is_poison() -> None:
    event = released().model_copy(update={"data": {"escrow_id": "not a uuid"}})
    with pytest.raises(PoisonEvent):
        addressees(event)


def test_the_message_is_in_the_apis_spelling() -> None:
    event = released()
    message = live_message(event)
    assert message["id"] == str(event.event_id)
    assert message["type"] == "escrow.released"
    assert message["data"]["netCents"] == 904
    assert message["data"]["escrowId"] == str(HOLD)


def test_every_addressee_gets_its_own_channel_and_admins_get_all() -> None:
    users = sorted([dashboard_user_channel(WORKER), dashboard_user_channel(CLIENT)])
    assert channels_for([WORKER, CLIENT, WORKER]) == [*users, ADMIN_CHANNEL]


# --- publishing, on real Redis -------------------------------------------------------------------


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


async def test_a_message_is_published_once_per_id(redis: aioredis.Redis) -> None:
    channel = dashboard_user_channel(uuid.uuid4())
    listener = redis.pubsub()
    await listener.subscribe(channel)
    assert (await listener.get_message(timeout=5))["type"] == "subscribe"  # type: ignore[index]
    publisher = LivePublisher(redis)
    message_id = f"test-{uuid.uuid4()}"
    message = {"id": message_id, "type": "rating.updated", "data": {}}
    assert await publisher.publish(message_id=message_id, message=message, channels=[channel])
    assert not await publisher.publish(message_id=message_id, message=message, channels=[channel])
    marker = {"id": "marker", "type": "marker", "data": {}}
    assert await publisher.publish(
        message_id=f"m-{uuid.uuid4()}", message=marker, channels=[channel]
    )
    received = []
    while not received or received[-1]["data"] != '{"id":"marker","type":"marker","data":{}}':
        got = await listener.get_message(timeout=5)
        assert got is not None, f"only {received}"
        received.append(got)
    await listener.aclose()
    ours = [m for m in received if f'"id":"{message_id}"' in m["data"]]
    assert len(ours) == 1


async def test_redis_down_never_fails_or_stalls_the_publisher() -> None:
    dead = aioredis.from_url(f"redis://127.0.0.1:{free_port()}/0", decode_responses=True)
    publisher = LivePublisher(dead)
    try:
        async with asyncio.timeout(10):
            first = await publisher.publish(
                message_id="a", message={"id": "a"}, channels=[ADMIN_CHANNEL]
            )
            # Within the cooldown Redis is not even tried: no connect per event.
            second = await publisher.publish(
                message_id="b", message={"id": "b"}, channels=[ADMIN_CHANNEL]
            )
    finally:
        await dead.aclose()
    assert first is False and second is False
    assert publisher._quiet_until > 0 and REDIS_COOLDOWN_S > 0


async def test_without_redis_nothing_is_published() -> None:
    assert not await LivePublisher(None).publish(
        message_id="a", message={"id": "a"}, channels=[ADMIN_CHANNEL]
    )
