"""Workers and projects as search and matching see them: one document per entity, read from the
write side (PostgreSQL) together with the event sequence it reflects.

The search indexer (agents/search.py), the matching agent (agents/matching.py) and the rebuild
(`tulifo reindex`) all read documents here, so an index, a ranking and a rebuild can never
disagree on what a worker or a project is. An event only says *which* entity changed; its
document is read as it is now, in the same statement as the sequence it is at, so a stale or
repeated event writes the current document under the current version and never an older one.

Versions (Elasticsearch's external versioning, and the matcher's "is this newer"):
- a project's is its `gigs` sequence (`outbox_streams`, bumped in every writing transaction);
- a worker's combines two counters that only grow: the `users` sequence (registration, profile
  and privacy changes) and the rating's review sequence (`analytics.user_ratings.last_sequence`,
  written by the ratings agent before it announces `rating.updated`):
  `users_sequence * RATING_SPAN + rating_sequence`. Either one moving makes the version grow.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import asyncpg
import orjson

# Reviews one worker may receive before the users sequence's digits would be reached: 10^9.
RATING_SPAN: Final = 1_000_000_000
# Rows per query when every document is read (startup of the matcher, a rebuild).
PAGE_ROWS: Final = 2_000


@dataclass(frozen=True)
class WorkerDocument:
    id: str
    version: int
    is_worker: bool
    # A worker the public may find: role worker, active, profile visibility public. Anyone else
    # is kept out of search and matching (their index document keeps only this flag).
    public: bool
    name: str
    headline: str
    bio: str
    skills: tuple[str, ...]
    experience: str
    location: str
    hourly_rate_cents: int | None
    currency: str
    availability: str
    # The ratings agent's Bayesian average (tables/ratings.py); None before the first review.
    rating: float | None
    rating_average: float | None
    rating_count: int
    completed_projects: int
    created_at: datetime
    updated_at: datetime

    def source(self) -> dict[str, Any]:
        """The search document (tables/search.py maps its fields); a hidden worker's keeps
        nothing but its id and the flag, so nothing they chose to hide sits in the index."""
        if not self.public:
            return {"id": self.id, "public": False}
        return {
            "id": self.id,
            "public": True,
            "name": self.name,
            "headline": self.headline,
            "bio": self.bio,
            "skills": list(self.skills),
            "experience": self.experience,
            "location": self.location,
            "hourly_rate_cents": self.hourly_rate_cents,
            "currency": self.currency,
            "availability": self.availability,
            "rating": self.rating,
            "rating_average": self.rating_average,
            "rating_count": self.rating_count,
            "completed_projects": self.completed_projects,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True)
class ProjectDocument:
    id: str
    version: int
    client_id: str
    title: str
    description: str
    skills: tuple[str, ...]
    budget_cents: int
    currency: str
    status: str
    deadline: datetime | None
    bid_count: int
    created_at: datetime
    updated_at: datetime

    @property
    def open(self) -> bool:
        return self.status == "open"

    def source(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "client_id": self.client_id,
            "title": self.title,
            "description": self.description,
            "skills": list(self.skills),
            "budget_cents": self.budget_cents,
            "currency": self.currency,
            "status": self.status,
            "deadline": self.deadline.isoformat() if self.deadline is not None else None,
            "bid_count": self.bid_count,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


_WORKERS = """
SELECT u.id, u.role, u.is_active, u.name, u.created_at,
       greatest(u.updated_at, p.updated_at, w.updated_at, r.updated_at) AS updated_at,
       coalesce(p.bio, '') AS bio, coalesce(p.skills, '{}') AS skills,
       coalesce(p.experience, '[]')::text AS experience, coalesce(p.location, '') AS location,
       coalesce(w.headline, '') AS headline, w.hourly_rate_cents,
       coalesce(w.currency, 'USD') AS currency,
       coalesce(w.availability, 'available') AS availability,
       coalesce(w.completed_projects, 0) AS completed_projects,
       r.average, r.bayesian, coalesce(r.count, 0) AS rating_count,
       coalesce(r.last_sequence, 0) AS rating_sequence,
       coalesce(s.privacy ->> 'profile_visibility', 'public') AS visibility,
       coalesce(os.last_sequence, 0) AS users_sequence
  FROM users u
  LEFT JOIN user_profiles p ON p.user_id = u.id
  LEFT JOIN worker_profiles w ON w.user_id = u.id
  LEFT JOIN analytics.user_ratings r ON r.user_id = u.id
  LEFT JOIN user_settings s ON s.user_id = u.id
  LEFT JOIN outbox_streams os ON os.stream = 'users' AND os.key = u.id::text
"""

_PROJECTS = """
SELECT p.id, p.client_id, p.title, p.description, p.required_skills, p.budget_cents,
       p.currency, p.status, p.deadline, p.created_at, p.updated_at,
       (SELECT count(*) FROM bids b
         WHERE b.project_id = p.id AND b.status IN ('pending', 'accepted')) AS bid_count,
       coalesce(os.last_sequence, 0) AS sequence
  FROM projects p
  LEFT JOIN outbox_streams os ON os.stream = 'gigs' AND os.key = p.id::text
"""


async def workers_by_id(
    conn: asyncpg.Connection | asyncpg.Pool, ids: Sequence[str | uuid.UUID]
) -> dict[str, WorkerDocument]:
    """The documents of the users `ids` (any role: a client's is not public); a user that does
    not exist is left out."""
    if not ids:
        return {}
    rows = await conn.fetch(_WORKERS + " WHERE u.id = ANY($1::uuid[])", [str(i) for i in ids])
    return {doc.id: doc for doc in map(_worker, rows)}


async def all_workers(pool: asyncpg.Pool) -> AsyncIterator[list[WorkerDocument]]:
    """Every worker's document, a page at a time, in id order (keyset: a page costs the same
    however deep it is)."""
    after = uuid.UUID(int=0)
    while True:
        rows = await pool.fetch(
            _WORKERS + " WHERE u.role = 'worker' AND u.id > $1 ORDER BY u.id LIMIT $2",
            after,
            PAGE_ROWS,
        )
        if not rows:
            return
        yield [_worker(row) for row in rows]
        after = rows[-1]["id"]


async def projects_by_id(
    conn: asyncpg.Connection | asyncpg.Pool, ids: Sequence[str | uuid.UUID]
) -> dict[str, ProjectDocument]:
    if not ids:
        return {}
    rows = await conn.fetch(_PROJECTS + " WHERE p.id = ANY($1::uuid[])", [str(i) for i in ids])
    return {doc.id: doc for doc in map(_project, rows)}


async def all_projects(
    pool: asyncpg.Pool, *, open_only: bool = False
) -> AsyncIterator[list[ProjectDocument]]:
    """Every project's document (or only the open ones), a page at a time, in id order."""
    after = uuid.UUID(int=0)
    status = "open" if open_only else None
    while True:
        rows = await pool.fetch(
            _PROJECTS + " WHERE ($3::text IS NULL OR p.status = $3) AND p.id > $1"
            " ORDER BY p.id LIMIT $2",
            after,
            PAGE_ROWS,
            status,
        )
        if not rows:
            return
        yield [_project(row) for row in rows]
        after = rows[-1]["id"]


def experience_text(raw: str) -> str:
    """A profile's experience entries (JSON list of {title, company, description, ...}) as one
    text: what search and matching read of them."""
    try:
        items = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ""
    parts: list[str] = []
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict):
            parts.extend(
                str(item[name]) for name in ("title", "company", "description") if item.get(name)
            )
    return "\n".join(parts)


def _float(value: Any) -> float | None:
    return float(value) if value is not None else None


def _worker(row: asyncpg.Record) -> WorkerDocument:
    return WorkerDocument(
        id=str(row["id"]),
        version=int(row["users_sequence"]) * RATING_SPAN + int(row["rating_sequence"]),
        is_worker=row["role"] == "worker",
        public=row["role"] == "worker" and row["is_active"] and row["visibility"] == "public",
        name=row["name"],
        headline=row["headline"],
        bio=row["bio"],
        skills=tuple(row["skills"]),
        experience=experience_text(row["experience"]),
        location=row["location"],
        hourly_rate_cents=row["hourly_rate_cents"],
        currency=row["currency"].strip(),
        availability=row["availability"],
        rating=_float(row["bayesian"]),
        rating_average=_float(row["average"]),
        rating_count=int(row["rating_count"]),
        completed_projects=int(row["completed_projects"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _project(row: asyncpg.Record) -> ProjectDocument:
    return ProjectDocument(
        id=str(row["id"]),
        version=int(row["sequence"]),
        client_id=str(row["client_id"]),
        title=row["title"],
        description=row["description"],
        skills=tuple(row["required_skills"]),
        budget_cents=int(row["budget_cents"]),
        currency=row["currency"].strip(),
        status=row["status"],
        deadline=row["deadline"],
        bid_count=int(row["bid_count"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
