"""Who is told what about each event, and how it reads on each channel (pure functions)."""

from __future__ import annotations

import uuid
from typing import get_args

import pytest

from agents.notification_templates import (
    CATEGORY,
    KINDS,
    TEMPLATES,
    Context,
    Notice,
    Party,
    money,
    parties_needed,
    render,
)
from api.users.schemas import NotificationSettings, NotificationType
from streams.bookings import BookingCreated
from streams.disputes import DisputeOpened, DisputeResolved
from streams.events import Event, EventData, PoisonEvent, new_event
from streams.messages import MessageSent
from streams.payments import PaymentCompleted, PaymentFailed
from streams.projects import BidAccepted, BidSubmitted, ProjectDelivered, ProjectStatusChanged
from streams.reviews import ReviewCreated
from streams.topics import STREAMS
from tests.streams.factories import user_registered

CLIENT, WORKER, PROJECT = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
IDS = {"booking_id": uuid.uuid4(), "escrow_id": uuid.uuid4(), "payment_id": uuid.uuid4()}


def party(user_id: uuid.UUID, name: str, role: str) -> Party:
    return Party(user_id, name, f"{name.split()[0].lower()}@example.com", role, {})


CTX = Context(
    {
        CLIENT: party(CLIENT, "Cleo Client", "client"),
        WORKER: party(WORKER, "Will Worker", "worker"),
    },
    project_title="Data pipeline",
)


def event(data: EventData) -> Event:
    return new_event(data, aggregate_id=PROJECT)


def notices(data: EventData, ctx: Context = CTX) -> list[Notice]:
    made = event(data)
    return TEMPLATES[made.type](made, ctx)


def told(data: EventData) -> list[tuple[str, uuid.UUID]]:
    return [(n.kind, n.recipient_id) for n in notices(data)]


def test_every_kind_has_a_category_the_settings_know_and_a_settings_switch() -> None:
    categories = set(NotificationSettings.model_fields) - {"channels", "types", "marketing"}
    assert {c for c in CATEGORY.values() if c is not None} <= categories
    assert set(get_args(NotificationType)) == set(KINDS)


def test_every_templated_event_type_travels_on_a_stream() -> None:
    published = {t for types in STREAMS.values() for t in types}
    assert set(TEMPLATES) <= published


def test_a_new_bid_tells_the_projects_client_who_bid_how_much() -> None:
    bid = BidSubmitted(
        bid_id=uuid.uuid4(), project_id=PROJECT, client_id=CLIENT, worker_id=WORKER,
        amount_cents=120_050, currency="USD", delivery_days=5,
    )  # fmt: skip
    [notice] = notices(bid)
    assert (notice.kind, notice.recipient_id) == ("new_bid", CLIENT)
    assert notice.title == "New bid on your project"
    assert notice.body == "Will Worker bid 1,200.50 USD on “Data pipeline”, delivery in 5 days."
    assert notice.path == f"/projects/{PROJECT}/bids"


def test_an_accepted_bid_tells_the_worker() -> None:
    accepted = BidAccepted(
        bid_id=uuid.uuid4(), project_id=PROJECT, client_id=CLIENT, worker_id=WORKER,
        amount_cents=1005, currency="EUR", delivery_days=3, rejected_bid_ids=[],
    )  # fmt: skip
    [notice] = notices(accepted)
    assert (notice.kind, notice.recipient_id) == ("bid_accepted", WORKER)
    assert "Cleo Client accepted your bid of 10.05 EUR" in notice.body


def test_a_booking_tells_the_worker() -> None:
    booking = BookingCreated(
        booking_id=IDS["booking_id"], project_id=PROJECT, bid_id=uuid.uuid4(), client_id=CLIENT,
        worker_id=WORKER, escrow_hold_id=IDS["escrow_id"], agreed_amount_cents=1005,
        fee_cents=101, net_cents=904, currency="USD",
    )  # fmt: skip
    assert told(booking) == [("booking_created", WORKER)]


def test_a_completed_payment_tells_both_parties_and_a_failed_one_the_payer() -> None:
    completed = PaymentCompleted(
        **IDS, project_id=PROJECT, client_id=CLIENT, worker_id=WORKER, amount_cents=1005,
        fee_cents=101, net_cents=904, currency="USD", stripe_payment_intent_id="pi_1",
    )  # fmt: skip
    assert told(completed) == [("payment_completed", CLIENT), ("payment_completed", WORKER)]
    failed = PaymentFailed(
        **IDS, project_id=PROJECT, client_id=CLIENT, amount_cents=1005, currency="USD",
        stripe_payment_intent_id="pi_1", failure_code="card_declined",
        failure_message="Your card was declined.",
    )  # fmt: skip
    [notice] = notices(failed)
    assert (notice.kind, notice.recipient_id) == ("payment_failed", CLIENT)
    assert "did not go through (Your card was declined.)" in notice.body


def test_a_delivery_tells_the_client_and_a_revision_request_the_worker() -> None:
    delivered = ProjectDelivered(
        project_id=PROJECT, client_id=CLIENT, worker_id=WORKER, booking_id=IDS["booking_id"],
        agreed_amount_cents=1005, currency="USD",
    )  # fmt: skip
    assert told(delivered) == [("delivered", CLIENT)]

    def moved(from_status: str, to_status: str) -> ProjectStatusChanged:
        return ProjectStatusChanged(
            project_id=PROJECT, client_id=CLIENT, worker_id=WORKER,
            from_status=from_status, to_status=to_status,
        )  # fmt: skip

    assert told(moved("delivered", "in_progress")) == [("changes_requested", WORKER)]
    # Other moves of the same event type tell nobody.
    assert told(moved("awarded", "in_progress")) == []
    assert told(moved("delivered", "completed")) == []


@pytest.mark.parametrize(("opener", "other"), [(CLIENT, WORKER), (WORKER, CLIENT)])
def test_a_dispute_tells_the_other_party(opener: uuid.UUID, other: uuid.UUID) -> None:
    opened = DisputeOpened(
        dispute_id=uuid.uuid4(), project_id=PROJECT, escrow_id=IDS["escrow_id"],
        client_id=CLIENT, worker_id=WORKER, opened_by=opener, reason="Nothing was delivered",
        evidence_count=0, previous_project_status="in_progress", amount_cents=1005,
        currency="USD",
    )  # fmt: skip
    [notice] = notices(opened)
    assert (notice.kind, notice.recipient_id) == ("dispute_opened", other)
    assert "“Nothing was delivered”" in notice.body


def test_a_resolved_dispute_tells_both_parties() -> None:
    resolved = DisputeResolved(
        dispute_id=uuid.uuid4(), project_id=PROJECT, escrow_id=IDS["escrow_id"],
        client_id=CLIENT, worker_id=WORKER, resolution="split", worker_amount_cents=505,
        client_amount_cents=500, fee_cents=51, currency="USD", resolved_by=uuid.uuid4(),
        project_status="completed",
    )  # fmt: skip
    assert told(resolved) == [("dispute_resolved", CLIENT), ("dispute_resolved", WORKER)]
    assert "split between you" in notices(resolved)[0].body


def test_a_review_tells_the_reviewee() -> None:
    review = ReviewCreated(
        review_id=uuid.uuid4(), project_id=PROJECT, reviewer_id=CLIENT, reviewee_id=WORKER,
        reviewee_role="worker", rating=4,
    )  # fmt: skip
    [notice] = notices(review)
    assert (notice.kind, notice.recipient_id) == ("review_received", WORKER)
    assert notice.body == "Cleo Client rated you 4 of 5 for “Data pipeline”."


def test_a_message_tells_only_the_recipients_who_were_offline_with_a_short_preview() -> None:
    message = MessageSent(
        message_id=uuid.uuid4(), conversation_id=uuid.uuid4(), sender_id=CLIENT,
        recipient_ids=[WORKER, uuid.uuid4()], offline_recipient_ids=[WORKER],
        preview="Hello\n\nthere " + "x" * 300,
    )  # fmt: skip
    [notice] = notices(message)
    assert (notice.kind, notice.recipient_id) == ("new_message", WORKER)
    assert notice.title == "New message from Cleo Client"
    assert notice.body.startswith("Hello there x") and len(notice.body) == 140
    online = message.model_copy(update={"offline_recipient_ids": []})
    assert notices(online) == []


def test_the_welcome_speaks_to_the_role() -> None:
    registered = user_registered(role="client")
    [notice] = TEMPLATES["user.registered"](registered, Context({}))
    assert notice.kind == "welcome"
    assert str(notice.recipient_id) == registered.data["user_id"]
    assert notice.body.startswith("Hi Ada Lovelace, welcome aboard! Post your first project")


def test_names_missing_from_the_context_do_not_stop_a_notification() -> None:
    review = ReviewCreated(
        review_id=uuid.uuid4(), project_id=PROJECT, reviewer_id=CLIENT, reviewee_id=WORKER,
        reviewee_role="worker", rating=5,
    )  # fmt: skip
    [notice] = notices(review, Context({}))
    assert notice.body == "Someone rated you 5 of 5 for your project."


def test_a_record_missing_its_fields_is_poison() -> None:
    broken = Event.model_validate(
        {**event(BidAccepted(
            bid_id=uuid.uuid4(), project_id=PROJECT, client_id=CLIENT, worker_id=WORKER,
            amount_cents=1, currency="USD", delivery_days=1, rejected_bid_ids=[],
        )).model_dump(), "data": {"bid_id": str(uuid.uuid4())}}
    )  # fmt: skip
    with pytest.raises(PoisonEvent, match=r"bid\.accepted data invalid"):
        TEMPLATES["bid.accepted"](broken, CTX)


def test_the_parties_an_event_names_are_read_in_one_list_with_its_project() -> None:
    opened = event(
        DisputeOpened(
            dispute_id=uuid.uuid4(), project_id=PROJECT, escrow_id=IDS["escrow_id"],
            client_id=CLIENT, worker_id=WORKER, opened_by=CLIENT, reason="r", evidence_count=0,
            previous_project_status="in_progress", amount_cents=1005, currency="USD",
        )
    )  # fmt: skip
    assert parties_needed(opened) == ([CLIENT, WORKER], PROJECT)
    users, project = parties_needed(user_registered())
    assert len(users) == 1 and project is None


def test_money_is_shown_in_major_units_from_integer_cents() -> None:
    assert money(1005, "USD") == "10.05 USD"
    assert money(100_000_000_000, "EUR") == "1,000,000,000.00 EUR"
    assert money(5, "GBP") == "0.05 GBP"


def test_the_email_escapes_what_users_typed_and_keeps_the_text_part_as_written() -> None:
    hostile = Party(WORKER, 'Eve <script>alert("x")</script> & Co', "eve@example.com", "worker", {})
    notice = Notice(
        "review_received", WORKER, "You received a review",
        'Mallory <b>"bold"</b> & rated you 1 of 5.', "/users/x?a=1&b=<2>", "Read the review",
    )  # fmt: skip

    rendered = render(notice, hostile, public_url="https://tulifo.test/")

    assert rendered.subject == "You received a review"
    assert "<script>" not in rendered.html and "<b>" not in rendered.html
    assert "Eve &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co" in rendered.html
    assert "Mallory &lt;b&gt;&quot;bold&quot;&lt;/b&gt; &amp; rated" in rendered.html
    assert 'href="https://tulifo.test/users/x?a=1&amp;b=&lt;2&gt;"' in rendered.html
    assert 'Hi Eve <script>alert("x")</script> & Co,' in rendered.text
    assert "Read the review: https://tulifo.test/users/x?a=1&b=<2>" in rendered.text
    assert rendered.push == {
        "title": "You received a review",
        "body": 'Mallory <b>"bold"</b> & rated you 1 of 5.',
        "url": "/users/x?a=1&b=<2>",
    }
