"""The scheduling agent's rule, without Kafka: which jobs an event asks for, and when."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from agents.jobs import jobs_for
from agents.notification_templates import TEMPLATES, Context
from infrastructure.settings import Settings
from streams.events import Event, PoisonEvent, new_event
from streams.projects import (
    BidSubmitted,
    ProjectCreated,
    ProjectDeadlineApproaching,
    ProjectDelivered,
    ProjectStatusChanged,
    ProjectUpdated,
)

SETTINGS = Settings(review_window_seconds=3600, bid_expiry_seconds=60)
PROJECT, CLIENT, WORKER = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


def delivered() -> Event:
    record = ProjectDelivered(
        project_id=PROJECT,
        client_id=CLIENT,
        worker_id=WORKER,
        booking_id=uuid.uuid4(),
        agreed_amount_cents=1005,
        currency="USD",
    )
    return new_event(record, aggregate_id=PROJECT, actor_id=WORKER)


def test_a_delivery_asks_for_its_release_at_the_end_of_the_review_window() -> None:
    event = delivered()
    [job] = jobs_for(event, SETTINGS)
    assert job.kind == "auto_release"
    assert job.subject == str(event.event_id)
    assert job.run_at == event.occurred_at + timedelta(hours=1)
    assert job.payload == {"projectId": str(PROJECT), "deliveryEventId": str(event.event_id)}
    # The same event (a redelivery) asks for the very same job; another delivery for another.
    assert jobs_for(event, SETTINGS) == [job]
    assert jobs_for(delivered(), SETTINGS)[0].subject != job.subject


def test_a_bid_asks_for_its_expiry() -> None:
    bid_id = uuid.uuid4()
    record = BidSubmitted(
        bid_id=bid_id,
        project_id=PROJECT,
        client_id=CLIENT,
        worker_id=WORKER,
        amount_cents=1005,
        currency="USD",
        delivery_days=3,
    )
    event = new_event(record, aggregate_id=PROJECT, actor_id=WORKER)
    [job] = jobs_for(event, SETTINGS)
    assert (job.kind, job.subject) == ("bid_expiry", str(bid_id))
    assert job.run_at == event.occurred_at + timedelta(seconds=60)
    assert job.payload == {"projectId": str(PROJECT), "bidId": str(bid_id)}


def test_other_events_ask_for_nothing() -> None:
    record = ProjectStatusChanged(
        project_id=PROJECT,
        client_id=CLIENT,
        worker_id=WORKER,
        from_status="delivered",
        to_status="in_progress",
    )
    assert jobs_for(new_event(record, aggregate_id=PROJECT), SETTINGS) == []


def test_a_delivery_that_is_not_one_is_poison() -> None:
    broken = delivered().model_copy(update={"data": {"project_id": "nope"}})
    with pytest.raises(PoisonEvent, match=r"project\.delivered"):
        jobs_for(broken, SETTINGS)


def project_created(deadline: datetime | None) -> Event:
    record = ProjectCreated(
        project_id=PROJECT,
        client_id=CLIENT,
        title="Build a data pipeline",
        description="Kafka in, PostgreSQL out.",
        budget_cents=1005,
        currency="USD",
        required_skills=["Python"],
        deadline=deadline,
        status="open",
    )
    return new_event(record, aggregate_id=PROJECT, actor_id=CLIENT)


def test_a_deadline_asks_for_a_reminder_ahead_of_it_and_a_new_deadline_for_another() -> None:
    settings = Settings(deadline_reminder_seconds=2 * 86_400)
    deadline = datetime.now(UTC) + timedelta(days=30)
    created = project_created(deadline)
    [job] = jobs_for(created, settings)
    assert (job.kind, job.run_at) == ("deadline_reminder", deadline - timedelta(days=2))
    assert job.payload == {"projectId": str(PROJECT), "deadline": deadline.isoformat()}
    moved = deadline + timedelta(days=3)
    record = ProjectUpdated(
        project_id=PROJECT,
        client_id=CLIENT,
        changed=["deadline"],
        project={"deadline": moved.isoformat()},
    )
    [again] = jobs_for(new_event(record, aggregate_id=PROJECT), settings)
    assert again.subject != job.subject and again.run_at == moved - timedelta(days=2)
    # A deadline nearer than the lead: reminded at once.
    soon = project_created(datetime.now(UTC) + timedelta(hours=1))
    assert jobs_for(soon, settings)[0].run_at == soon.occurred_at
    assert jobs_for(project_created(None), settings) == []
    retitled = ProjectUpdated(
        project_id=PROJECT, client_id=CLIENT, changed=["title"], project={"title": "New"}
    )
    assert jobs_for(new_event(retitled, aggregate_id=PROJECT), settings) == []


def test_the_reminder_tells_both_parties() -> None:
    record = ProjectDeadlineApproaching(
        project_id=PROJECT,
        client_id=CLIENT,
        worker_id=WORKER,
        deadline=datetime(2026, 6, 1, 17, 0, tzinfo=UTC),
    )
    event = new_event(record, aggregate_id=PROJECT)
    notices = TEMPLATES[event.type](event, Context({}, "Build a data pipeline"))
    assert [(n.kind, n.recipient_id) for n in notices] == [
        ("deadline_reminder", CLIENT),
        ("deadline_reminder", WORKER),
    ]
    assert notices[0].body == "“Build a data pipeline” is due on 01 Jun 2026, 17:00 UTC."
