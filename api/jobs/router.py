"""/api/admin/jobs: the scheduled jobs (MongoDB `worker_queue`), for admins only. A job that
keeps failing ends `dead` with its last error; an admin who fixed the cause retries it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import Path, Query

from api.auth.dependencies import Admin
from api.envelope import Envelope, ok
from api.errors import Conflict, NotFound
from api.jobs.schemas import JobOut, JobPage
from api.pagination import Limit
from api.routers import DomainRouter
from tables import jobs as store

router = DomainRouter(prefix="/admin/jobs", tags=["jobs"])

# A job id is "<kind>:<subject>": a kind's name and a UUID or a Stripe id, far under this.
MAX_JOB_ID_CHARS = 200
JobStatus = Literal["scheduled", "running", "retrying", "done", "dead"]
JobId = Annotated[str, Path(min_length=1, max_length=MAX_JOB_ID_CHARS)]


@router.get("")
async def list_jobs(
    caller: Admin,
    status: Annotated[JobStatus | None, Query(description="only jobs in this status")] = None,
    after: Annotated[
        str | None,
        Query(max_length=MAX_JOB_ID_CHARS, description="nextAfter of the previous page"),
    ] = None,
    limit: Limit = 50,
) -> Envelope[JobPage]:
    """Jobs in id order (kind, then subject), `limit` at a time."""
    found = await store.list_jobs(caller.mongo, status=status, limit=limit + 1, after=after)
    page = found[:limit]
    next_after = page[-1].id if len(found) > limit else None
    return ok(JobPage(items=[JobOut.of(job) for job in page], next_after=next_after))


@router.post("/{job_id}/retry")
async def retry_job(job_id: JobId, caller: Admin) -> Envelope[JobOut]:
    """Schedule a dead job again, now, with its attempts counted from zero."""
    revived = await store.revive(caller.mongo, job_id, now=datetime.now(UTC))
    if revived is not None:
        return ok(JobOut.of(revived))
    job = await store.get_job(caller.mongo, job_id)
    if job is None:
        raise NotFound("job not found")
    raise Conflict(
        f"the job is {job.status}: only a dead job is retried",
        code="JOB_NOT_DEAD",
        details={"jobStatus": job.status},
    )
