"""The project a seed client means when its body names none.

The seed's API took a review as `{rating, comment}` and a dispute as `{reason, evidence}`: the
project was the caller's current one. A caller with exactly one project the action can apply to
gets it; with none or several, `projectId` is required (a 422 naming it), since guessing between
two gigs would review or freeze the wrong one.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection

import asyncpg

from api.errors import Invalid

_TO_REVIEW = """
SELECT p.id FROM projects p
 WHERE p.status = 'completed' AND $1 IN (p.client_id, p.worker_id)
   AND NOT EXISTS (SELECT 1 FROM reviews r WHERE r.project_id = p.id AND r.reviewer_id = $1)
 LIMIT 2"""

_TO_DISPUTE = """
SELECT p.id FROM projects p JOIN escrow_holds e ON e.project_id = p.id
 WHERE p.status = ANY($2::text[]) AND $1 IN (p.client_id, p.worker_id) AND e.status = 'funded'
 LIMIT 2"""


async def project_to_review(conn: asyncpg.Connection, *, user_id: uuid.UUID) -> uuid.UUID:
    """The caller's one completed project they have not reviewed yet."""
    found = [row["id"] for row in await conn.fetch(_TO_REVIEW, user_id)]
    return _the_one(
        found,
        none="you have no completed project awaiting your review",
        several="you have several completed projects to review; say which",
    )


async def project_to_dispute(
    conn: asyncpg.Connection, *, user_id: uuid.UUID, statuses: Collection[str]
) -> uuid.UUID:
    """The caller's one project whose money is held and which may still be disputed."""
    found = [row["id"] for row in await conn.fetch(_TO_DISPUTE, user_id, list(statuses))]
    return _the_one(
        found,
        none="you have no project with money held that could be disputed",
        several="you have several projects that could be disputed; say which",
    )


def _the_one(found: list[uuid.UUID], *, none: str, several: str) -> uuid.UUID:
    if len(found) == 1:
        return found[0]
    message = f"required: {several if found else none}"
    raise Invalid(
        f"invalid request: projectId: {message}",
        details=[{"field": "projectId", "message": message, "type": "missing"}],
    )
