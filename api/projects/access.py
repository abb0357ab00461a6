"""Who may see a project and who speaks for which side of it: the per-object rules every gig
domain (projects, bids, bookings, reviews) applies the same way.

An open project is on the public board. Once awarded it leaves the board: from then on only its
client, its worker, the workers who bid on it and admins see it, and anyone else gets the same
404 as for a project that does not exist, so closed deals are not browsable by id.
"""

from __future__ import annotations

import uuid

import asyncpg

from api.auth.schemas import AuthenticatedUser
from api.errors import NotFound
from api.projects import repository
from api.projects.lifecycle import Party

PROJECT_NOT_FOUND = "project not found"


def can_view(project: asyncpg.Record, viewer: AuthenticatedUser | None) -> bool:
    """Whether `viewer` may see `project` (a record of `repository.fetch_project` for them)."""
    if project["status"] == "open":
        return True
    if viewer is None:
        return False
    if viewer.role == "admin" or party_of(project, viewer) is not None:
        return True
    return bool(project["viewer_has_bid"])


def party_of(project: asyncpg.Record, user: AuthenticatedUser) -> Party | None:
    """The side of the project `user` is on, if any: its client, or its (awarded) worker."""
    if user.id == project["client_id"]:
        return "client"
    if project["worker_id"] is not None and user.id == project["worker_id"]:
        return "worker"
    return None


def sees_the_deal(record: asyncpg.Record, user: AuthenticatedUser) -> bool:
    """Whether `user` may see a record of a deal (booking, escrow hold, dispute): its client,
    its worker and admins."""
    return user.role == "admin" or user.id in (record["client_id"], record["worker_id"])


async def load_visible_project(
    conn: asyncpg.Connection,
    *,
    project_id: uuid.UUID,
    viewer: AuthenticatedUser | None,
    lock: repository.Lock = None,
) -> asyncpg.Record:
    """The project, or a 404 when it does not exist or `viewer` may not see it."""
    project = await repository.fetch_project(
        conn, project_id=project_id, viewer_id=viewer.id if viewer else None, lock=lock
    )
    if project is None or not can_view(project, viewer):
        raise NotFound(PROJECT_NOT_FOUND)
    return project
