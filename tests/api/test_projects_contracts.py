"""What the gig domains promise each other and the stream side, checked without HTTP: every
record routes to a topic, the escrow refund hook has the agreed shape, cursors round-trip."""

from __future__ import annotations

import inspect
import uuid
from datetime import UTC, datetime

import pytest

from api.errors import Invalid
from api.pagination import decode_cursor, encode_cursor
from streams import bookings, projects, reviews
from streams.events import EVENT_TYPES, EventData


def _records() -> list[type[EventData]]:
    return [
        value
        for module in (projects, bookings, reviews)
        for value in vars(module).values()
        if inspect.isclass(value) and issubclass(value, EventData) and value is not EventData
    ]


def test_every_gig_record_has_a_topic() -> None:
    # An event type missing from the catalog would be parked on the dead-letter topic.
    types = {record.event_type for record in _records()}
    assert types == {
        "project.created",
        "project.updated",
        "project.status_changed",
        "project.delivered",
        "bid.submitted",
        "bid.accepted",
        "bid.withdrawn",
        "bid.expired",
        "project.deadline_approaching",
        "booking.created",
        "review.created",
    }
    assert types <= set(EVENT_TYPES)


def test_the_escrow_refund_hook_has_the_agreed_signature() -> None:
    # Cancellation calls it with the connection, then stripe, project_id, actor_id by keyword.
    from api.escrow.service import refund_for_cancellation

    assert inspect.iscoroutinefunction(refund_for_cancellation)
    signature = inspect.signature(refund_for_cancellation)
    signature.bind(object(), stripe=object(), project_id=uuid.uuid4(), actor_id=uuid.uuid4())
    for name in ("stripe", "project_id", "actor_id"):
        assert signature.parameters[name].kind is inspect.Parameter.KEYWORD_ONLY


def test_a_cursor_round_trips_exactly() -> None:
    created_at = datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    item_id = uuid.uuid4()
    cursor = decode_cursor(encode_cursor(created_at, item_id))
    assert cursor is not None
    assert (cursor.created_at, cursor.id) == (created_at, item_id)
    assert decode_cursor(None) is None


@pytest.mark.parametrize(
    "value",
    [
        "",
        "!!!",
        "bm90IGpzb24",  # "not json"
        "WzEsMl0",  # [1,2]
        "WyIyMDI1LTAxLTAxVDAwOjAwOjAwIiwiYWJjIl0",  # ["2025-01-01T00:00:00","abc"]
        "WyIyMDI1LTAxLTAxVDAwOjAwOjAwIiwiMDAwMDAwMDAtMDAwMC0wMDAwLTAwMDAtMDAwMDAwMDAwMDAwIl0",
    ],
)
def test_a_cursor_we_did_not_issue_is_a_422_naming_cursor(value: str) -> None:
    with pytest.raises(Invalid) as raised:
        decode_cursor(value)
    assert raised.value.details[0]["field"] == "cursor"
