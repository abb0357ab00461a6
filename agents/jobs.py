"""Scheduling from events: the domain events that start a clock become jobs in `worker_queue`
(tables/jobs.py), run when their time comes by `tulifo jobs` (bridges/jobs.py).

    project.delivered  →  auto_release at the delivery's time + `review_window_seconds`
    bid.submitted      →  bid_expiry at the submission's time + `bid_expiry_seconds`
    project.created, project.updated with a deadline
                       →  deadline_reminder `deadline_reminder_seconds` before the deadline (a
                          changed deadline is a new job; the old one finds it moved and does
                          nothing)

A job's id is its kind and the event that asked for it, and scheduling is an insert-if-absent:
a redelivered event, or a replay of the whole history, schedules nothing new and never moves a
job already scheduled, run or dead. Whether the work is still wanted is decided when it runs
(the client may have answered the delivery meanwhile), not here, so the order of events between
projects does not matter: this fold is order-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
from pydantic import ValidationError

from agents.runtime import AgentDeps, PoisonEvent, subscribe, with_retries
from api.jobs.kinds import AUTO_RELEASE, BID_EXPIRY, DEADLINE_REMINDER
from infrastructure.settings import Settings
from streams.events import Event
from streams.projects import BidSubmitted, ProjectCreated, ProjectDelivered, ProjectUpdated
from tables import jobs as store

AGENT_NAME = "jobs.scheduling"


@dataclass(frozen=True)
class Scheduled:
    kind: str
    subject: str
    payload: dict[str, Any]
    run_at: datetime


def jobs_for(event: Event, settings: Settings) -> list[Scheduled]:
    """The jobs `event` asks for (pure: the same event always asks for the same jobs)."""
    if event.type == "project.delivered":
        try:
            delivered = ProjectDelivered.model_validate(event.data)
        except ValidationError as exc:
            raise PoisonEvent(f"project.delivered: {exc}") from exc
        window = timedelta(seconds=settings.review_window_seconds)
        return [
            Scheduled(
                kind=AUTO_RELEASE,
                subject=str(event.event_id),
                payload={
                    "projectId": str(delivered.project_id),
                    "deliveryEventId": str(event.event_id),
                },
                # The event's own time: a late or repeated delivery of the event does not give
                # the client a longer window.
                run_at=event.occurred_at + window,
            )
        ]
    if event.type == "bid.submitted":
        try:
            bid = BidSubmitted.model_validate(event.data)
        except ValidationError as exc:
            raise PoisonEvent(f"bid.submitted: {exc}") from exc
        return [
            Scheduled(
                kind=BID_EXPIRY,
                subject=str(bid.bid_id),
                payload={"projectId": str(bid.project_id), "bidId": str(bid.bid_id)},
                run_at=event.occurred_at + timedelta(seconds=settings.bid_expiry_seconds),
            )
        ]
    if event.type in ("project.created", "project.updated"):
        deadline = _deadline_of(event)
        if deadline is None:
            return []
        project_id = event.aggregate_id
        return [
            Scheduled(
                kind=DEADLINE_REMINDER,
                subject=f"{project_id}:{deadline.astimezone(UTC).isoformat()}",
                # As text: a BSON date would cut the microseconds the project's deadline has.
                payload={"projectId": project_id, "deadline": deadline.isoformat()},
                # A deadline nearer than the reminder's lead: reminded at once.
                run_at=max(
                    event.occurred_at,
                    deadline - timedelta(seconds=settings.deadline_reminder_seconds),
                ),
            )
        ]
    return []


def _deadline_of(event: Event) -> datetime | None:
    """The deadline a project.created sets, or a project.updated changes it to."""
    try:
        if event.type == "project.created":
            return ProjectCreated.model_validate(event.data).deadline
        updated = ProjectUpdated.model_validate(event.data)
        if "deadline" not in updated.changed or updated.project.get("deadline") is None:
            return None
        return datetime.fromisoformat(str(updated.project["deadline"]))
    except (ValidationError, ValueError) as exc:
        raise PoisonEvent(f"{event.type}: {exc}") from exc


async def schedule_jobs(deps: AgentDeps, event: Event, *, now: datetime) -> int:
    """Upsert the jobs of `event`; how many this call created."""
    created = 0
    for job in jobs_for(event, deps.settings):

        async def upsert(job: Scheduled = job) -> bool:
            return await store.schedule(
                deps.mongo,
                kind=job.kind,
                subject=job.subject,
                payload=job.payload,
                run_at=job.run_at,
                now=now,
            )

        created += await with_retries(upsert, policy=deps.retry, what=f"{job.kind} job")
    return created


SCHEDULING_TYPES = ("project.delivered", "bid.submitted", "project.created", "project.updated")


def register(app: faust.App, deps: AgentDeps) -> None:
    async def on_event(event: Event) -> None:
        await schedule_jobs(deps, event, now=datetime.now(UTC))

    subscribe(
        app,
        deps,
        stream="gigs",
        name=AGENT_NAME,
        handlers=dict.fromkeys(SCHEDULING_TYPES, on_event),
    )
