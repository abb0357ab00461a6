"""Scheduled work (the seed's worker service, §3.4): the `worker_queue` collection in MongoDB and
the execution log in the Elasticsearch index `worker_queue_logs`.

A job is one document, `_id` = "<kind>:<subject>", where the subject is what the job is for (the
event that asked for it, or the aggregate): scheduling is an upsert with `$setOnInsert`, so an
event delivered twice schedules one job, and a job already run is not scheduled again.

    scheduled ─claimed─▶ running ─handler returned─▶ done
        ▲                   │ ─handler raised─▶ retrying ─(next_run_at)─▶ running …
        │                   │ ─attempts used up, or a permanent error─▶ dead
        └─admin retries─────┴─ dead        (periodic jobs go back to scheduled instead of done)

Claiming is one `find_one_and_update`: a due job (scheduled or retrying, `next_run_at` passed) or
a running one whose lease has expired becomes running under the claimant's lease. MongoDB applies
it to one document atomically, so two runners never both get a job; a runner killed mid-job
leaves its lease, which runs out, and the job is claimed again (at-least-once: handlers are
idempotent). Every later write names the lease owner, so a runner that lost its lease (it was
too slow) cannot overwrite what the new owner did.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from elasticsearch import AsyncElasticsearch
from pymongo import ASCENDING, ReturnDocument

from infrastructure.mongo import MongoDatabase

log = logging.getLogger(__name__)

WORKER_QUEUE: Final = "worker_queue"
WORKER_QUEUE_LOGS: Final = "worker_queue_logs"

Status = Literal["scheduled", "running", "retrying", "done", "dead"]
STATUSES: Final[tuple[Status, ...]] = ("scheduled", "running", "retrying", "done", "dead")
_DUE: Final = ("scheduled", "retrying")
# A failure's message is kept in the document and the log; a traceback-sized one is cut.
MAX_ERROR_CHARS: Final = 2000


@dataclass(frozen=True)
class Backoff:
    """The pause before attempt n+1 after n failures: doubling from `first_s`, capped at `max_s`
    (the defaults: 30 s, 1 min, 2 min, … 1 h, so a Stripe or database outage of an hour is
    waited out by a job with ten attempts)."""

    first_s: float = 30.0
    max_s: float = 3600.0

    def delay(self, failures: int) -> timedelta:
        seconds = min(self.max_s, self.first_s * 2 ** min(max(failures, 1) - 1, 30))
        return timedelta(seconds=seconds)


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    payload: dict[str, Any]
    status: str
    attempts: int
    next_run_at: datetime
    lease_owner: str | None
    lease_until: datetime | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    # Seconds between runs of a periodic job; None for a one-off.
    every_s: float | None = None

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Job:
        lease = doc.get("lease") or {}
        return cls(
            id=doc["_id"],
            kind=doc["kind"],
            payload=doc.get("payload") or {},
            status=doc["status"],
            attempts=doc.get("attempts", 0),
            next_run_at=doc["nextRunAt"],
            lease_owner=lease.get("owner"),
            lease_until=lease.get("until"),
            last_error=doc.get("lastError"),
            created_at=doc["createdAt"],
            updated_at=doc["updatedAt"],
            every_s=doc.get("everySeconds"),
        )


def job_id(kind: str, subject: str) -> str:
    """The one id of the `kind` job for `subject` (an event id, an aggregate id)."""
    return f"{kind}:{subject}"


async def ensure_indexes(db: MongoDatabase) -> None:
    """What the claim and the admin listing filter on."""
    queue = db[WORKER_QUEUE]
    await queue.create_index([("status", ASCENDING), ("nextRunAt", ASCENDING)], name="due")
    await queue.create_index([("status", ASCENDING), ("lease.until", ASCENDING)], name="leases")


async def schedule(
    db: MongoDatabase,
    *,
    kind: str,
    subject: str,
    payload: dict[str, Any],
    run_at: datetime,
    now: datetime,
    every_s: float | None = None,
) -> bool:
    """Create the job unless it exists (in whatever status); True when this call created it."""
    fields: dict[str, Any] = {
        "kind": kind,
        "payload": payload,
        "status": "scheduled",
        "attempts": 0,
        "nextRunAt": run_at,
        "lease": None,
        "lastError": None,
        "createdAt": now,
        "updatedAt": now,
    }
    if every_s is not None:
        fields["everySeconds"] = every_s
    result = await db[WORKER_QUEUE].update_one(
        {"_id": job_id(kind, subject)}, {"$setOnInsert": fields}, upsert=True
    )
    return result.upserted_id is not None


async def claim(
    db: MongoDatabase,
    *,
    owner: str,
    now: datetime,
    lease: timedelta,
    kinds: list[str] | None = None,
) -> Job | None:
    """Take the oldest due job (or one whose runner's lease ran out) under `owner`'s lease."""
    due: dict[str, Any] = {
        "$or": [
            {"status": {"$in": list(_DUE)}, "nextRunAt": {"$lte": now}},
            {"status": "running", "lease.until": {"$lt": now}},
        ]
    }
    if kinds is not None:
        due = {"$and": [due, {"kind": {"$in": kinds}}]}
    doc = await db[WORKER_QUEUE].find_one_and_update(
        due,
        {
            "$set": {
                "status": "running",
                "lease": {"owner": owner, "until": now + lease},
                "updatedAt": now,
            },
            "$inc": {"attempts": 1},
        },
        sort=[("nextRunAt", ASCENDING)],
        return_document=ReturnDocument.AFTER,
    )
    return None if doc is None else Job.from_document(doc)


def _held_by(job: Job) -> dict[str, Any]:
    return {"_id": job.id, "status": "running", "lease.owner": job.lease_owner}


async def extend_lease(db: MongoDatabase, job: Job, *, now: datetime, lease: timedelta) -> bool:
    """Keep a long job ours; False when the lease was lost (another runner took the job)."""
    result = await db[WORKER_QUEUE].update_one(
        _held_by(job), {"$set": {"lease.until": now + lease, "updatedAt": now}}
    )
    return result.modified_count == 1


async def finish(db: MongoDatabase, job: Job, *, now: datetime, note: str | None = None) -> bool:
    """The handler is done: a one-off job is `done`; a periodic one is scheduled again, its
    attempts counted from zero. False when the lease was no longer ours."""
    update: dict[str, Any] = {"lease": None, "lastError": None, "updatedAt": now, "note": note}
    if job.every_s is not None:
        update.update(
            status="scheduled", attempts=0, nextRunAt=now + timedelta(seconds=job.every_s)
        )
    else:
        update.update(status="done", doneAt=now)
    result = await db[WORKER_QUEUE].update_one(_held_by(job), {"$set": update})
    return result.modified_count == 1


async def fail(
    db: MongoDatabase,
    job: Job,
    *,
    now: datetime,
    error: str,
    max_attempts: int,
    backoff: Backoff,
    permanent: bool = False,
) -> Status | None:
    """The handler raised: retried after the backoff, or `dead` with the reason once its attempts
    are used up (or at once, when `permanent`). The status it ends in; None when the lease was
    no longer ours."""
    error = error[:MAX_ERROR_CHARS]
    update: dict[str, Any] = {"lease": None, "lastError": error, "updatedAt": now}
    status: Status
    if permanent or job.attempts >= max_attempts:
        status = "dead"
        update.update(status=status, deadAt=now)
    else:
        status = "retrying"
        update.update(status=status, nextRunAt=now + backoff.delay(job.attempts))
    result = await db[WORKER_QUEUE].update_one(_held_by(job), {"$set": update})
    return status if result.modified_count == 1 else None


async def get_job(db: MongoDatabase, job_id_: str) -> Job | None:
    doc = await db[WORKER_QUEUE].find_one({"_id": job_id_})
    return None if doc is None else Job.from_document(doc)


async def list_jobs(
    db: MongoDatabase, *, status: str | None, limit: int, after: str | None = None
) -> list[Job]:
    """Jobs (of one status, or all) in id order, from after `after`."""
    query: dict[str, Any] = {} if status is None else {"status": status}
    if after is not None:
        query["_id"] = {"$gt": after}
    cursor = db[WORKER_QUEUE].find(query).sort("_id", ASCENDING).limit(limit)
    return [Job.from_document(doc) async for doc in cursor]


async def revive(db: MongoDatabase, job_id_: str, *, now: datetime) -> Job | None:
    """A dead job scheduled again, now, with its attempts reset; None unless it was dead."""
    doc = await db[WORKER_QUEUE].find_one_and_update(
        {"_id": job_id_, "status": "dead"},
        {
            "$set": {"status": "scheduled", "attempts": 0, "nextRunAt": now, "updatedAt": now},
            "$unset": {"deadAt": ""},
        },
        return_document=ReturnDocument.AFTER,
    )
    return None if doc is None else Job.from_document(doc)


# --- the execution log (Elasticsearch) ----------------------------------------------------------

LOG_MAPPINGS: Final[dict[str, Any]] = {
    "properties": {
        "jobId": {"type": "keyword"},
        "kind": {"type": "keyword"},
        "attempt": {"type": "integer"},
        "outcome": {"type": "keyword"},
        "runner": {"type": "keyword"},
        "message": {"type": "text"},
        "at": {"type": "date"},
    }
}


# A log line is one small document: a healthy cluster takes it in milliseconds.
LOG_TIMEOUT_S: Final = 2.0


def log_index(prefix: str = "") -> str:
    return f"{prefix}{WORKER_QUEUE_LOGS}"


async def ensure_log_index(es: AsyncElasticsearch, *, prefix: str = "") -> None:
    name = log_index(prefix)
    if not await es.indices.exists(index=name):
        await es.options(ignore_status=400).indices.create(index=name, mappings=LOG_MAPPINGS)


async def write_log(
    es: AsyncElasticsearch | None,
    *,
    prefix: str,
    job: Job,
    outcome: str,
    runner: str,
    at: datetime,
    message: str | None = None,
) -> bool:
    """One line of a job's history, under "<job id>:<attempt>:<outcome>" so a retried write is
    the same document. Best effort: a log that cannot be written never fails the job (the job's
    own document is the record that counts); False when it was not written."""
    if es is None:
        return False
    try:
        # Short and without retries: a slow log must not hold the job's runner.
        await es.options(request_timeout=LOG_TIMEOUT_S, max_retries=0).index(
            index=log_index(prefix),
            id=f"{job.id}:{job.attempts}:{outcome}",
            document={
                "jobId": job.id,
                "kind": job.kind,
                "attempt": job.attempts,
                "outcome": outcome,
                "runner": runner,
                "message": message,
                "at": at.isoformat(),
            },
        )
    except Exception as exc:
        log.warning("job log for %s not written: %s: %s", job.id, type(exc).__name__, exc)
        return False
    return True
