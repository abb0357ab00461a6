"""`tulifo jobs`: the runner of scheduled work (the seed's worker service).

It claims due jobs from `worker_queue` (tables/jobs.py) one at a time, runs the work of their
kind (api/jobs/kinds.py) and records the outcome: done, retrying after a capped exponential
backoff, or dead once `jobs_max_attempts` are used up. Any number of runners may run: a claim
hands a job to one of them, under a lease the runner renews while the work goes on.

- Idle, it looks for due jobs every `jobs_poll_seconds`; after a job it looks again at once, so a
  backlog is worked through without pauses.
- SIGTERM/SIGINT: no new claim; the job in hand is cancelled and left to its lease, so another
  runner (or this one, restarted) takes it over once the lease runs out. A SIGKILL leaves the same.
  The work is idempotent (api/jobs/kinds.py), so running a job's interrupted work again is safe.
- A job claimed more than `jobs_max_attempts` times without an outcome (its runners keep dying on
  it) is dead too, so it cannot take runners down forever.
- Each outcome is also a line in the Elasticsearch index `worker_queue_logs`, best effort.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from elasticsearch import AsyncElasticsearch
from prometheus_client import Counter

from api.jobs.kinds import KINDS, PERIODIC_KINDS, PERIODIC_SUBJECT, JobWork, PermanentJobError, Work
from bridges.stripe import StripeGateway
from infrastructure.database import create_pool
from infrastructure.logging import configure_logging
from infrastructure.mongo import MongoDatabase, create_mongo_client, mongo_database
from infrastructure.search import create_search_client
from infrastructure.settings import Settings
from tables import jobs as store

log = logging.getLogger(__name__)

JOBS_RUN = Counter("tulifo_jobs_total", "Jobs a runner finished with", ["kind", "outcome"])
# What the idle loop waits after an error talking to MongoDB, doubling to the poll cap.
_FIRST_PAUSE_S = 0.2


def runner_name() -> str:
    """Who holds a lease: the host and process, and a nonce (a pid is reused after a restart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def now() -> datetime:
    return datetime.now(UTC)


class JobRunner:
    def __init__(
        self,
        settings: Settings,
        *,
        mongo: MongoDatabase,
        work: JobWork,
        search: AsyncElasticsearch | None = None,
        kinds: Mapping[str, Work] = KINDS,
        name: str | None = None,
    ) -> None:
        self.settings = settings
        self.mongo = mongo
        self.work = work
        self.search = search
        self.kinds = dict(kinds)
        self.name = name or runner_name()
        self.lease = timedelta(seconds=settings.jobs_lease_seconds)
        self.backoff = store.Backoff(
            first_s=settings.jobs_backoff_first_seconds, max_s=settings.jobs_backoff_max_seconds
        )
        self._stopping = asyncio.Event()

    async def prepare(self) -> None:
        """Indexes, the log index and the periodic jobs (created once, whoever starts first)."""
        await store.ensure_indexes(self.mongo)
        if self.search is not None:
            try:
                await store.ensure_log_index(self.search, prefix=self.settings.search_index_prefix)
            except Exception as exc:  # the log is best effort; the jobs are not
                log.warning("job log index not ready: %s: %s", type(exc).__name__, exc)
        at = now()
        for kind in PERIODIC_KINDS:
            if kind in self.kinds:
                await store.schedule(
                    self.mongo,
                    kind=kind,
                    subject=PERIODIC_SUBJECT,
                    payload={},
                    run_at=at,
                    now=at,
                    every_s=self.settings.jobs_sweep_seconds,
                )

    async def run(self) -> None:
        """Claim and run due jobs until `stop`."""
        await self.prepare()
        log.info("job runner %s started", self.name)
        pause = _FIRST_PAUSE_S
        while not self._stopping.is_set():
            try:
                ran = await self.run_one()
            except Exception as exc:
                log.warning("job runner: %s: %s; pausing %.1fs", type(exc).__name__, exc, pause)
                await self._idle(pause)
                pause = min(pause * 2, self.settings.jobs_poll_seconds * 10)
                continue
            pause = _FIRST_PAUSE_S
            if not ran:
                await self._idle(self.settings.jobs_poll_seconds)
        log.info("job runner %s stopped", self.name)

    async def stop(self) -> None:
        self._stopping.set()

    async def _idle(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def run_one(self) -> bool:
        """Claim one due job and run it; False when none was due."""
        job = await store.claim(
            self.mongo, owner=self.name, now=now(), lease=self.lease, kinds=list(self.kinds)
        )
        if job is None:
            return False
        if job.attempts > self.settings.jobs_max_attempts:
            # Claimed again and again with no outcome: its runners die on it.
            await self._failed(
                job, f"no outcome after {job.attempts - 1} claims (runners died)", True
            )
            return True
        task = asyncio.ensure_future(self._run(job))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not task.done():
            # Stopping: the job is left to its lease (see the module's docstring).
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            log.info("job %s left to its lease: the runner is stopping", job.id)
            return True
        # Its outcome could not be recorded (MongoDB down): raised here, so the loop pauses; the
        # job is run again once its lease runs out.
        task.result()
        return True

    async def _run(self, job: store.Job) -> None:
        await self._log(job, "started")
        renewing = asyncio.ensure_future(self._renew(job))
        try:
            note = await self.kinds[job.kind](self.work, job)
        except PermanentJobError as exc:
            await self._failed(job, str(exc), True)
            return
        except Exception as exc:
            await self._failed(job, f"{type(exc).__name__}: {exc}", False)
            return
        finally:
            renewing.cancel()
        if await store.finish(self.mongo, job, now=now(), note=note):
            JOBS_RUN.labels(kind=job.kind, outcome="done").inc()
            log.info("job %s done: %s", job.id, note)
            await self._log(job, "done", note)
        else:
            log.warning("job %s finished after its lease was lost", job.id)

    async def _failed(self, job: store.Job, error: str, permanent: bool) -> None:
        status = await store.fail(
            self.mongo,
            job,
            now=now(),
            error=error,
            max_attempts=self.settings.jobs_max_attempts,
            backoff=self.backoff,
            permanent=permanent,
        )
        if status is None:
            log.warning("job %s failed after its lease was lost: %s", job.id, error)
            return
        JOBS_RUN.labels(kind=job.kind, outcome=status).inc()
        logger = log.error if status == "dead" else log.warning
        logger("job %s attempt %d failed (%s): %s", job.id, job.attempts, status, error)
        await self._log(job, status, error)

    async def _renew(self, job: store.Job) -> None:
        """Renew the lease a third of the way through, so only a dead runner loses it."""
        while True:
            await asyncio.sleep(self.lease.total_seconds() / 3)
            try:
                if not await store.extend_lease(self.mongo, job, now=now(), lease=self.lease):
                    log.warning("job %s: lease lost to another runner", job.id)
                    return
            except Exception as exc:
                log.warning("job %s: lease not renewed: %s", job.id, exc)

    async def _log(self, job: store.Job, outcome: str, message: str | None = None) -> None:
        await store.write_log(
            self.search,
            prefix=self.settings.search_index_prefix,
            job=job,
            outcome=outcome,
            runner=self.name,
            at=now(),
            message=message,
        )


async def serve(settings: Settings) -> None:
    """Run a runner with its own clients until SIGTERM or SIGINT."""
    mongo_client = create_mongo_client(settings)
    pool = await create_pool(settings.database_url, min_size=1, max_size=4)
    stripe = StripeGateway.from_settings(settings)
    search = create_search_client(settings) if settings.elasticsearch_url else None
    runner = JobRunner(
        settings,
        mongo=mongo_database(mongo_client, settings),
        work=JobWork(settings=settings, pool=pool, stripe=stripe),
        search=search,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(runner.stop()))
    try:
        await runner.run()
    finally:
        await stripe.aclose()
        await pool.close()
        if search is not None:
            await search.close()
        mongo_client.close()


def main(settings: Settings) -> None:
    """`tulifo jobs`: run scheduled jobs until SIGTERM or SIGINT."""
    configure_logging(
        service=f"{settings.service_name}-jobs",
        level=settings.log_level,
        json_lines=settings.log_json,
    )
    asyncio.run(serve(settings))


if __name__ == "__main__":  # `python -m bridges.jobs`, configured by TULIFO_* (the tests do)
    from infrastructure.settings import get_settings

    main(get_settings())
