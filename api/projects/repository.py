"""Every SQL statement of the projects domain."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

import asyncpg

from api.moves import conditional_move
from api.pagination import Cursor
from api.projects import lifecycle

Lock = Literal["update", "share"] | None

# The columns of ProjectOut, with the booking id of a booked project.
_SELECT = """
SELECT p.id, p.client_id, p.title, p.description, p.budget_cents, p.currency,
       p.required_skills, p.deadline, p.status, p.worker_id, p.accepted_bid_id,
       p.created_at, p.updated_at, bk.id AS booking_id
  FROM projects p
  LEFT JOIN bookings bk ON bk.project_id = p.id
"""

# Columns a status move sets with the status (awarding names the worker and the bid).
_MOVE_COLUMNS: Final = frozenset({"worker_id", "accepted_bid_id"})

# Columns PATCH may set; with _MOVE_COLUMNS, the only names ever interpolated into SQL below.
EDITABLE_COLUMNS = frozenset(
    {"title", "description", "budget_cents", "currency", "required_skills", "deadline"}
)


@dataclass(frozen=True)
class ProjectFilters:
    statuses: tuple[str, ...] = ()
    # Lowercased; matched against projects.skill_keys.
    skills: tuple[str, ...] = ()
    skills_match: Literal["any", "all"] = "any"
    min_budget_cents: int | None = None
    max_budget_cents: int | None = None
    currency: str | None = None
    mine: bool = False


@dataclass(frozen=True)
class Viewer:
    """Who is listing: None id for the public."""

    id: uuid.UUID | None
    role: str | None


async def insert_project(
    conn: asyncpg.Connection,
    *,
    project_id: uuid.UUID,
    client_id: uuid.UUID,
    title: str,
    description: str,
    budget_cents: int,
    currency: str,
    required_skills: list[str],
    deadline: datetime | None,
) -> None:
    await conn.execute(
        """INSERT INTO projects (id, client_id, title, description, budget_cents, currency,
                                 required_skills, deadline)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        project_id,
        client_id,
        title,
        description,
        budget_cents,
        currency,
        required_skills,
        deadline,
    )


async def fetch_project(
    conn: asyncpg.Connection,
    *,
    project_id: uuid.UUID,
    viewer_id: uuid.UUID | None = None,
    lock: Lock = None,
) -> asyncpg.Record | None:
    """A project, with whether `viewer_id` ever bid on it (it may then see it after it closes).

    `lock="update"` serialises every writer of the project's state (accept, book, status
    moves, edits); `lock="share"` is for writers that only need it to stay put meanwhile (a
    new bid must not slip in while another transaction awards the project).
    """
    suffix = {"update": " FOR UPDATE OF p", "share": " FOR SHARE OF p", None: ""}[lock]
    sql = f"""
        SELECT q.*, EXISTS (SELECT 1 FROM bids b WHERE b.project_id = q.id AND b.worker_id = $2)
               AS viewer_has_bid
          FROM ({_SELECT} WHERE p.id = $1{suffix}) q"""
    record: asyncpg.Record | None = await conn.fetchrow(sql, project_id, viewer_id)
    return record


async def list_projects(
    conn: asyncpg.Connection,
    *,
    filters: ProjectFilters,
    viewer: Viewer,
    cursor: Cursor | None,
    limit: int,
) -> list[asyncpg.Record]:
    """One page (limit + 1 rows, see api/pagination.py) of the projects `viewer` may see."""
    params: list[Any] = []

    def param(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    where: list[str] = []
    bid_by = "EXISTS (SELECT 1 FROM bids b WHERE b.project_id = p.id AND b.worker_id = {v})"
    if viewer.id is None:
        where.append("p.status = 'open'")
    elif viewer.role != "admin":
        v = param(viewer.id)
        where.append(
            f"(p.status = 'open' OR p.client_id = {v} OR p.worker_id = {v} OR {bid_by.format(v=v)})"
        )
    if filters.mine:
        assert viewer.id is not None
        v = param(viewer.id)
        if viewer.role == "worker":
            where.append(f"(p.worker_id = {v} OR {bid_by.format(v=v)})")
        else:
            where.append(f"p.client_id = {v}")
    if filters.statuses:
        where.append(f"p.status = ANY({param(list(filters.statuses))}::text[])")
    if filters.skills:
        operator = "&&" if filters.skills_match == "any" else "@>"
        where.append(f"p.skill_keys {operator} {param(list(filters.skills))}::text[]")
    if filters.min_budget_cents is not None:
        where.append(f"p.budget_cents >= {param(filters.min_budget_cents)}")
    if filters.max_budget_cents is not None:
        where.append(f"p.budget_cents <= {param(filters.max_budget_cents)}")
    if filters.currency is not None:
        where.append(f"p.currency = {param(filters.currency)}")
    if cursor is not None:
        where.append(
            f"(p.created_at, p.id) < ({param(cursor.created_at)}, {param(cursor.id)}::uuid)"
        )
    sql = (
        _SELECT
        + (" WHERE " + " AND ".join(where) if where else "")
        + f" ORDER BY p.created_at DESC, p.id DESC LIMIT {param(limit + 1)}"
    )
    return list(await conn.fetch(sql, *params))


async def update_columns(
    conn: asyncpg.Connection, *, project_id: uuid.UUID, values: dict[str, Any]
) -> None:
    """Set `values` (column → value) on a project."""
    unknown = set(values) - EDITABLE_COLUMNS
    if unknown:
        raise ValueError(f"not editable columns of projects: {sorted(unknown)}")
    columns = sorted(values)
    assignments = ", ".join(f"{column} = ${i}" for i, column in enumerate(columns, start=2))
    await conn.execute(
        f"UPDATE projects SET {assignments}, updated_at = now() WHERE id = $1",
        project_id,
        *(values[column] for column in columns),
    )


async def move_status(
    conn: asyncpg.Connection,
    *,
    project_id: uuid.UUID,
    source: str | Collection[str],
    target: str,
    actor: lifecycle.Actor,
    how: lifecycle.How,
    also: Mapping[str, Any] | None = None,
) -> None:
    """The one writer of projects.status: move the project from `source` (one status or any of
    several) to `target`, setting the `also` columns with it.

    The edge must be in api/projects/lifecycle.py: a move not there is a bug (IllegalMove),
    since users' illegal moves are refused before anything is written. The UPDATE is
    conditional on the status the caller decided from, so a concurrent move that committed
    first makes this one a 409 PROJECT_STATUS_CHANGED instead of overwriting it.
    """
    sources = [source] if isinstance(source, str) else sorted(set(source))
    lifecycle.require_edge(sources, target, actor=actor, how=how)
    extra = dict(also or {})
    unknown = set(extra) - _MOVE_COLUMNS
    if unknown:
        raise ValueError(f"a move does not set projects columns {sorted(unknown)}")
    columns = sorted(extra)
    assignments = "".join(f", {column} = ${i}" for i, column in enumerate(columns, start=4))
    current = await conditional_move(
        conn,
        table="projects",
        row_id=project_id,
        sources=sources,
        target=target,
        sets=assignments,
        args=[extra[column] for column in columns],
    )
    if current is not None:
        raise lifecycle.stale(project_id, sources, target, current)


async def award(
    conn: asyncpg.Connection, *, project_id: uuid.UUID, worker_id: uuid.UUID, bid_id: uuid.UUID
) -> None:
    """Mark an open project awarded to the worker of its accepted bid."""
    await move_status(
        conn,
        project_id=project_id,
        source="open",
        target="awarded",
        actor="client",
        how="accept_bid",
        also={"worker_id": worker_id, "accepted_bid_id": bid_id},
    )
