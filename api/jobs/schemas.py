"""The admin's view of scheduled jobs (camelCase on the wire, api/schemas.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from api.schemas import ResponseModel
from tables.jobs import Job


class JobOut(ResponseModel):
    id: str
    kind: str
    status: str
    payload: dict[str, Any]
    attempts: int
    next_run_at: datetime
    lease_owner: str | None
    lease_until: datetime | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls(
            id=job.id,
            kind=job.kind,
            status=job.status,
            payload=job.payload,
            attempts=job.attempts,
            next_run_at=job.next_run_at,
            lease_owner=job.lease_owner,
            lease_until=job.lease_until,
            last_error=job.last_error,
            created_at=job.created_at,
            updated_at=job.updated_at,
        )


class JobPage(ResponseModel):
    items: list[JobOut]
    # The id to pass as `after` for the next page; None on the last page.
    next_after: str | None
