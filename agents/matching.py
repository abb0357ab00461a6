"""Matching: per open project, the top-K workers by a blend of TF-IDF similarity, rating and
availability (tables/matching.py), kept live from the `gigs`, `users` and `ratings` streams,
materialized to `analytics.match_scores` (what GET /api/matching/match serves) and announced as
`match.scored` on the `matches` stream with the ranks that changed.

A projection (agents/projecting.py): events name the workers and projects that changed, and their
documents are read as they are now (tables/documents.py); a document whose version the matcher
already holds changes nothing, so redeliveries cost a lookup and no recompute.

Why not a Faust table: a ranking compares one project with *every* worker, so the whole corpus
must sit in one process, while a table is split by partition across workers. The matcher's state
is instead rebuilt at start from PostgreSQL (the write side and the ratings read model) in one
pass — ~10k workers load in a second or two — and the stored rankings are reconciled with it.
This agent must therefore run in exactly one worker process: with several workers, give it one
of its own (`TULIFO_WORKER_AGENTS=matching`) and leave it out of the others.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Final

import asyncpg
import faust
from aiokafka.errors import KafkaError
from prometheus_client import Histogram

from agents.projecting import Projection, Projector, register_projection
from agents.runtime import AgentDeps
from infrastructure.database import create_pool
from streams.events import Event, new_event
from streams.matching import MatchScored, RankedWorker
from streams.topics import stream_topic
from tables import documents, matching
from tables.documents import ProjectDocument, WorkerDocument
from tables.sink import PG_UNAVAILABLE

log = logging.getLogger(__name__)

WORKER_TYPES: Final = frozenset({"user.registered", "profile.updated"})
RATING_TYPES: Final = frozenset({"rating.updated"})
# Creation and edits rank a project afresh; the others can close it (awarded, cancelled).
PROJECT_TYPES: Final = frozenset(
    {"project.created", "project.updated", "project.status_changed", "bid.accepted"}
)
# How many of a ranking's best workers `match.scored` repeats whole.
TOP_IN_EVENT: Final = 10

# project id -> its ranking now, and the workers that entered, moved or left it.
Changes = dict[str, tuple[tuple[matching.Match, ...], set[str]]]

RECOMPUTE_SECONDS = Histogram(
    "tulifo_match_recompute_seconds",
    "Time the matcher spent re-ranking for one changed project or worker",
    ["kind"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)


def worker_input(doc: WorkerDocument) -> matching.WorkerInput:
    return matching.WorkerInput(
        worker_id=doc.id,
        text=matching.worker_text(doc.skills, doc.headline, doc.bio, doc.experience),
        bayesian=doc.rating,
        availability=doc.availability,
    )


def project_input(doc: ProjectDocument) -> matching.ProjectInput:
    return matching.ProjectInput(
        project_id=doc.id, text=matching.project_text(doc.title, doc.description, doc.skills)
    )


def _ranked(match: matching.Match) -> RankedWorker:
    return RankedWorker(
        worker_id=uuid.UUID(match.worker_id),
        rank=match.rank,
        score=match.score,
        text=match.text,
        rating=match.rating,
        availability=match.availability,
    )


def match_scored(
    project_id: str, client_id: str, ranking: Sequence[matching.Match], changed: Iterable[str]
) -> Event:
    """The event for a project's new `ranking`; the same ranking always gets the same event id,
    so a batch redone after a crash republishes a duplicate consumers recognise."""
    by_worker = {m.worker_id: m for m in ranking}
    changes = [
        _ranked(by_worker[w])
        if w in by_worker
        else RankedWorker(worker_id=uuid.UUID(w), rank=None, score=None)
        for w in sorted(changed)
    ]
    record = MatchScored(
        project_id=uuid.UUID(project_id),
        client_id=uuid.UUID(client_id),
        changes=changes,
        ranked=len(ranking),
        top=[_ranked(m) for m in ranking[:TOP_IN_EVENT]],
    )
    digest = hashlib.sha256(
        ";".join(f"{m.worker_id}:{m.rank}:{m.score:.9f}" for m in ranking).encode()
    ).hexdigest()
    event = new_event(record, aggregate_id=project_id)
    return event.model_copy(
        update={
            "event_id": uuid.uuid5(uuid.NAMESPACE_URL, f"tulifo:match.scored:{project_id}:{digest}")
        }
    )


_DELETE = "DELETE FROM analytics.match_scores WHERE project_id = ANY($1::uuid[])"
_COLUMNS: Final = (
    "project_id",
    "worker_id",
    "rank",
    "score",
    "text_score",
    "rating_score",
    "availability_score",
    "computed_at",
)


class Matching:
    """The matcher of one worker process, and how its rankings reach PostgreSQL and Kafka."""

    def __init__(self, app: faust.App, deps: AgentDeps) -> None:
        self.app = app
        self.settings = deps.settings
        self.matcher = matching.Matcher(top_k=self.settings.match_top_k)
        self.pool: asyncpg.Pool | None = None
        # The document version each worker and open project was last taken at.
        self.worker_versions: dict[str, int] = {}
        self.project_versions: dict[str, int] = {}
        self.client_of: dict[str, str] = {}
        self.loaded = False
        # Rankings changed in memory but not yet announced and stored (Kafka or PostgreSQL was
        # down): sent first on the next try, since the matcher will not see those changes again.
        self._unpublished: list[tuple[Changes, list[str]]] = []

    async def start(self) -> None:
        if self.pool is None:
            self.pool = await create_pool(self.settings.database_url, min_size=1, max_size=2)
        if not self.loaded:
            await self.load()

    async def apply(self, events: Sequence[Event]) -> Mapping[str, str]:
        assert self.pool is not None, "started first"
        await self._publish_pending()
        workers = list(dict.fromkeys(e.aggregate_id for e in events if e.type not in PROJECT_TYPES))
        projects = list(dict.fromkeys(e.aggregate_id for e in events if e.type in PROJECT_TYPES))
        changes: Changes = {}
        closed: list[str] = []
        # Workers first: a project created in the same batch is then ranked among them as they
        # are now.
        for doc in (await documents.workers_by_id(self.pool, workers)).values():
            self._take_worker(doc, changes)
        for project in (await documents.projects_by_id(self.pool, projects)).values():
            if self._take_project(project, changes):
                closed.append(project.id)
        await self.publish(changes, closed)
        return {}

    def _take_worker(self, doc: WorkerDocument, changes: Changes) -> None:
        if self.worker_versions.get(doc.id, -1) >= doc.version:
            return  # already ranked as it is: a redelivery, or an event of a client
        started = time.perf_counter()
        if doc.public:
            self.worker_versions[doc.id] = doc.version
            moved = self.matcher.upsert_worker(worker_input(doc))
        elif doc.id in self.worker_versions:
            del self.worker_versions[doc.id]
            moved = self.matcher.remove_worker(doc.id)
        else:
            return
        RECOMPUTE_SECONDS.labels(kind="worker").observe(time.perf_counter() - started)
        for change in moved:
            _merge(changes, change)

    def _take_project(
        self,
        doc: ProjectDocument,
        changes: Changes,
    ) -> bool:
        """Rank `doc` if it is open and changed; True when it has just stopped being open."""
        if not doc.open:
            known = doc.id in self.project_versions
            if known:
                del self.project_versions[doc.id]
                self.matcher.remove_project(doc.id)
                changes.pop(doc.id, None)
            return known
        if self.project_versions.get(doc.id, -1) >= doc.version:
            return False
        self.project_versions[doc.id] = doc.version
        self.client_of[doc.id] = doc.client_id
        started = time.perf_counter()
        change = self.matcher.upsert_project(project_input(doc))
        RECOMPUTE_SECONDS.labels(kind="project").observe(time.perf_counter() - started)
        _merge(changes, change)
        return False

    async def load(self) -> None:
        """Every public worker and open project from PostgreSQL, ranked in one pass, and the
        stored rankings brought in line with the result."""
        assert self.pool is not None
        started = time.perf_counter()
        workers: list[WorkerDocument] = []
        async for page in documents.all_workers(self.pool):
            workers.extend(doc for doc in page if doc.public)
        projects: list[ProjectDocument] = []
        async for project_page in documents.all_projects(self.pool, open_only=True):
            projects.extend(project_page)
        self.matcher.load(map(worker_input, workers), map(project_input, projects))
        self.worker_versions = {doc.id: doc.version for doc in workers}
        self.project_versions = {doc.id: doc.version for doc in projects}
        self.client_of = {doc.id: doc.client_id for doc in projects}
        stored = await self._stored_rankings()
        changes: Changes = {}
        for doc in projects:
            ranking = self.matcher.ranking(doc.id) or ()
            before = stored.pop(doc.id, {})
            now = {m.worker_id: (m.rank, round(m.score, 9)) for m in ranking}
            if now != before:
                changed = {w for w in now.keys() | before.keys() if now.get(w) != before.get(w)}
                changes[doc.id] = (ranking, changed)
        # Rankings of projects that closed while no matcher ran.
        await self.publish(changes, list(stored))
        self.loaded = True
        log.info(
            "matching: %d workers, %d open projects ranked in %.2fs; %d rankings updated, "
            "%d of closed projects removed",
            len(workers),
            len(projects),
            time.perf_counter() - started,
            len(changes),
            len(stored),
        )

    async def _stored_rankings(self) -> dict[str, dict[str, tuple[int, float]]]:
        assert self.pool is not None
        rows = await self.pool.fetch(
            "SELECT project_id, worker_id, rank, score FROM analytics.match_scores"
        )
        stored: dict[str, dict[str, tuple[int, float]]] = {}
        for row in rows:
            stored.setdefault(str(row["project_id"]), {})[str(row["worker_id"])] = (
                row["rank"],
                round(row["score"], 9),
            )
        return stored

    async def publish(self, changes: Changes, closed: Sequence[str]) -> None:
        """Announce the changed rankings and wait for Kafka's acks, then store them (each
        project's whole ranking in one transaction) and drop those of `closed` projects.

        Announced first: a crash between the two leaves the stored rankings behind, and the next
        start's reconciliation stores and announces them again (the same ranking, the same event
        id). Stored first, the announcement would be lost with the process."""
        if changes or closed:
            self._unpublished.append((dict(changes), list(closed)))
        await self._publish_pending()

    async def _publish_pending(self) -> None:
        while self._unpublished:
            changes, closed = self._unpublished[0]
            await self._announce(changes)
            await self._store(changes, closed)
            self._unpublished.pop(0)

    async def _store(self, changes: Changes, closed: Sequence[str]) -> None:
        assert self.pool is not None
        now = datetime.now(UTC)
        rows = [
            (
                uuid.UUID(project_id),
                uuid.UUID(m.worker_id),
                m.rank,
                m.score,
                m.text,
                m.rating,
                m.availability,
                now,
            )
            for project_id, (ranking, _) in changes.items()
            for m in ranking
        ]
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(_DELETE, [*changes, *closed])
            if rows:
                await conn.copy_records_to_table(
                    "match_scores", schema_name="analytics", records=rows, columns=_COLUMNS
                )

    async def _announce(self, changes: Changes) -> None:
        topic = stream_topic("matches", self.settings.topic_prefix)
        pending = []
        for project_id, (ranking, changed) in changes.items():
            event = match_scored(project_id, self.client_of[project_id], ranking, changed)
            headers = [
                ("event_id", str(event.event_id).encode()),
                ("event_type", event.type.encode()),
            ]
            pending.append(
                await self.app.producer.send(
                    topic,
                    project_id.encode(),
                    event.model_dump_json().encode(),
                    None,
                    None,
                    headers,
                )
            )
        # Not acked in time: raise, and the batch is held and announced again (`_unpublished`).
        async with asyncio.timeout(self.settings.kafka_ack_timeout_seconds):
            await asyncio.gather(*pending)


def _merge(
    changes: Changes,
    change: matching.RankingChange,
) -> None:
    """A project's latest ranking in this batch, with every worker that moved in any step."""
    earlier = changes.get(change.project_id)
    moved = set(change.changed) | (earlier[1] if earlier else set())
    changes[change.project_id] = (change.ranking, moved)


def register(app: faust.App, deps: AgentDeps) -> None:
    state = Matching(app, deps)

    def make(_: AgentDeps) -> Projector:
        return state

    register_projection(
        app,
        deps,
        Projection(
            name="matching",
            types={"users": WORKER_TYPES, "ratings": RATING_TYPES, "gigs": PROJECT_TYPES},
            make=make,
            transient=(KafkaError, TimeoutError, *PG_UNAVAILABLE),
        ),
    )
