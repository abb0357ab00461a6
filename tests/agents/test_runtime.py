"""How agents decode, retry and dead-letter, without Kafka."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pymongo.errors import ServerSelectionTimeoutError

from agents.runtime import (
    PoisonEvent,
    RetryLater,
    RetryPolicy,
    dead_letter_headers,
    handle_event,
    validate_event,
    with_retries,
)
from bridges.email import EmailUnavailable
from streams.events import Event
from streams.packing import unpack
from tests.streams.factories import user_registered


class Sleeps:
    """Stands in for asyncio.sleep and remembers the pauses asked for."""

    def __init__(self) -> None:
        self.pauses: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)


def envelope_bytes(event: Event) -> bytes:
    return json.dumps(event.model_dump(mode="json")).encode()


def decode(raw: bytes | None, *, stream: str) -> list[Event]:
    """What an agent makes of one message's value."""
    return [validate_event(item, stream=stream) for item in unpack(raw)]


def test_an_envelope_decodes_to_its_event() -> None:
    event = user_registered()
    assert decode(envelope_bytes(event), stream="users") == [event]


def test_a_pack_decodes_to_its_events_in_order() -> None:
    events = [user_registered() for _ in range(3)]
    raw = json.dumps([e.model_dump(mode="json") for e in events]).encode()
    assert decode(raw, stream="users") == events


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "empty message"),
        (b"\x00\xff", "not JSON"),
        (b'{"hello": "world"}', "not an event envelope: event_id: Field required"),
        (b"[1, 2]", "not an event envelope"),
        (b'"hello"', "not an event envelope nor a pack of them: a JSON str"),
    ],
)
def test_what_is_not_an_envelope_is_poison_with_a_reason(raw: bytes | None, reason: str) -> None:
    with pytest.raises(PoisonEvent, match=reason):
        decode(raw, stream="users")


def test_an_event_on_another_streams_topic_is_poison() -> None:
    with pytest.raises(PoisonEvent, match=r"'user\.registered' on the 'gigs' stream"):
        decode(envelope_bytes(user_registered()), stream="gigs")


async def test_a_type_of_the_stream_without_a_handler_is_passed_over() -> None:
    async def handler(event: Event) -> None:
        raise AssertionError("not this one")

    event = user_registered()
    decoded, reason = await handle_event(
        event.model_dump(mode="json"), stream="users", handlers={"profile.updated": handler}
    )
    assert (decoded, reason) == (event, None)


def test_the_retry_delay_doubles_up_to_its_cap() -> None:
    policy = RetryPolicy(attempts=10, first_delay_s=0.5, max_delay_s=5)
    assert [policy.delay(n) for n in range(1, 7)] == [0.5, 1, 2, 4, 5, 5]


async def test_a_transient_failure_is_retried_until_it_passes() -> None:
    failures = [ServerSelectionTimeoutError("mongo down"), EmailUnavailable("421 busy")]
    sleeps = Sleeps()

    async def step() -> str:
        if failures:
            raise failures.pop(0)
        return "done"

    result = await with_retries(step, policy=RetryPolicy(attempts=5), what="step", sleep=sleeps)
    assert result == "done"
    assert sleeps.pauses == [0.5, 1.0]


async def test_a_failure_that_outlasts_the_attempts_becomes_poison() -> None:
    sleeps = Sleeps()

    async def step() -> None:
        raise RetryLater("someone else is on it")

    with pytest.raises(PoisonEvent, match="welcome email: gave up after 4 attempts: RetryLater"):
        await with_retries(step, policy=RetryPolicy(attempts=4), what="welcome email", sleep=sleeps)
    assert len(sleeps.pauses) == 3


async def test_a_bug_is_not_retried() -> None:
    sleeps = Sleeps()

    async def step() -> None:
        raise KeyError("oops")

    with pytest.raises(KeyError):
        await with_retries(step, policy=RetryPolicy(), what="step", sleep=sleeps)
    assert sleeps.pauses == []


async def test_a_handled_message_has_no_dead_letter_reason() -> None:
    seen: list[Event] = []

    async def handler(event: Event) -> None:
        seen.append(event)

    event = user_registered()
    decoded, reason = await handle_event(
        event.model_dump(mode="json"), stream="users", handlers={"user.registered": handler}
    )
    assert (decoded, reason) == (event, None)
    assert seen == [event]


async def test_a_handler_that_crashes_dead_letters_its_event_instead_of_the_agent() -> None:
    async def handler(event: Event) -> None:
        raise ZeroDivisionError("bug")

    event = user_registered()
    decoded, reason = await handle_event(
        event.model_dump(mode="json"), stream="users", handlers={"user.registered": handler}
    )
    assert decoded == event
    assert reason == "unexpected ZeroDivisionError: bug"


def test_dead_letter_headers_keep_the_original_and_say_why_and_where_from() -> None:
    now = datetime(2026, 5, 1, tzinfo=UTC)
    headers = dead_letter_headers(
        [("event_id", b"e1"), ("dead_letter_reason", b"an older reason")],
        reason="x" * 5000,
        agent="notifications.welcome",
        topic="tulifo.user.registered",
        partition=2,
        offset=41,
        now=now,
    )
    as_dict = dict(headers)
    assert len(headers) == len(as_dict)  # the older reason was replaced, not repeated
    assert as_dict["event_id"] == b"e1"
    assert as_dict["dead_letter_reason"] == b"x" * 1000
    assert as_dict["original_topic"] == b"tulifo.user.registered"
    assert as_dict["original_partition"] == b"2"
    assert as_dict["original_offset"] == b"41"
    assert as_dict["dead_letter_agent"] == b"notifications.welcome"
    assert as_dict["dead_lettered_at"] == now.isoformat().encode()
