"""The deadline reminder's write: `project.deadline_approaching` in the outbox, once per
project and deadline, which the notifications agent turns into a notice to both parties."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Final

import asyncpg

from bridges.outbox import append_event
from infrastructure.database import unit_of_work
from streams.events import new_event
from streams.projects import ProjectDeadlineApproaching

# Someone is working to the deadline only once the project is awarded.
REMINDED_STATUSES: Final = frozenset({"awarded", "in_progress"})
# Fixed, so a reminder's event id is the same on every run of its job.
_REMINDER_IDS: Final = uuid.UUID("5d1b3f0e-7a43-4c55-9a59-0b6c1d7e2f10")


def reminder_event_id(project_id: uuid.UUID, deadline: datetime) -> uuid.UUID:
    return uuid.uuid5(_REMINDER_IDS, f"{project_id}:{deadline.astimezone(UTC).isoformat()}")


async def remind_of_deadline(
    *, pool: asyncpg.Pool, project_id: uuid.UUID, deadline: datetime
) -> str | None:
    """Emit the reminder for `deadline`; None when emitted now, else why not (the deadline
    moved, passed, the project is not being worked on, or it was emitted before)."""
    event_id = reminder_event_id(project_id, deadline)
    async with unit_of_work(pool) as conn:
        project = await conn.fetchrow(
            """SELECT id, client_id, worker_id, status, deadline FROM projects
                WHERE id = $1 FOR UPDATE""",
            project_id,
        )
        if project is None:
            return "the project does not exist"
        if project["deadline"] != deadline:
            return "the deadline moved"
        if project["status"] not in REMINDED_STATUSES or project["worker_id"] is None:
            return f"the project is {project['status']}"
        if deadline <= datetime.now(UTC):
            return "the deadline has passed"
        if await conn.fetchval("SELECT 1 FROM outbox WHERE event_id = $1", event_id):
            return "already reminded"
        record = ProjectDeadlineApproaching(
            project_id=project_id,
            client_id=project["client_id"],
            worker_id=project["worker_id"],
            deadline=deadline,
        )
        event = new_event(record, aggregate_id=project_id).model_copy(update={"event_id": event_id})
        await append_event(conn, event)
    return None
