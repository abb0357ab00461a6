"""Reviews: each side of a completed project reviews the other, once."""

from __future__ import annotations

import uuid
from typing import Any, Literal

import asyncpg

from api.auth.schemas import AuthenticatedUser
from api.errors import Conflict, Forbidden, NotFound
from api.pagination import Cursor, split_page
from api.projects import implied
from api.projects.access import load_visible_project, party_of
from api.reviews import repository
from api.reviews.schemas import ReviewCreate, ReviewOut, ReviewPage
from bridges.outbox import append_event
from infrastructure.database import unit_of_work
from streams.events import new_event
from streams.reviews import ReviewCreated


async def create_review(
    *, pool: asyncpg.Pool, user: AuthenticatedUser, body: ReviewCreate
) -> ReviewOut:
    """The caller's review of the other party of a completed project; emits `review.created`."""
    async with unit_of_work(pool) as conn:
        project_id = body.project_id or await implied.project_to_review(conn, user_id=user.id)
        # FOR SHARE: the project cannot leave `completed` (a dispute) while this commits.
        project = await load_visible_project(conn, project_id=project_id, viewer=user, lock="share")
        party = party_of(project, user)
        if party is None:
            raise Forbidden("only the project's client and its worker may review it")
        if project["status"] != "completed":
            raise Conflict(
                f"a project can be reviewed once it is completed; it is {project['status']}",
                code="PROJECT_NOT_COMPLETED",
                details={"currentStatus": project["status"]},
            )
        reviewee_id: uuid.UUID
        reviewee_role: Literal["worker", "client"]
        if party == "client":
            reviewee_id, reviewee_role = project["worker_id"], "worker"
        else:
            reviewee_id, reviewee_role = project["client_id"], "client"
        review_id = uuid.uuid4()
        try:
            record = await repository.insert_review(
                conn,
                review_id=review_id,
                project_id=project_id,
                reviewer_id=user.id,
                reviewee_id=reviewee_id,
                rating=body.rating,
                comment=body.comment,
            )
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(
                "you have already reviewed this project", code="ALREADY_REVIEWED"
            ) from exc
        event = ReviewCreated(
            review_id=review_id,
            project_id=project_id,
            reviewer_id=user.id,
            reviewee_id=reviewee_id,
            reviewee_role=reviewee_role,
            rating=body.rating,
        )
        await append_event(conn, new_event(event, aggregate_id=reviewee_id, actor_id=user.id))
    return _out(record)


async def list_reviews_of(
    *, pool: asyncpg.Pool, user_id: uuid.UUID, cursor: Cursor | None, limit: int
) -> ReviewPage:
    """Reviews about a user, newest first; public."""
    async with pool.acquire() as conn:
        if await repository.fetch_reviewable_user(conn, user_id=user_id) is None:
            raise NotFound("no public reviews for this user")
        rows = await repository.list_reviews_of(
            conn, reviewee_id=user_id, cursor=cursor, limit=limit
        )
    page, next_cursor = split_page(rows, limit=limit)
    return ReviewPage(items=[_out(row) for row in page], next_cursor=next_cursor)


def _out(record: asyncpg.Record) -> ReviewOut:
    fields: dict[str, Any] = {name: record[name] for name in ReviewOut.model_fields}
    return ReviewOut(**fields)
