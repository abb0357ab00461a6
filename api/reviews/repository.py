"""Every SQL statement of reviews."""

from __future__ import annotations

import uuid

import asyncpg

from api.pagination import Cursor

_SELECT = """
SELECT r.id, r.project_id, r.reviewer_id, u.name AS reviewer_name, r.reviewee_id,
       e.role AS reviewee_role, r.rating, r.comment, r.created_at
  FROM reviews r
  JOIN users u ON u.id = r.reviewer_id
  JOIN users e ON e.id = r.reviewee_id
"""


async def insert_review(
    conn: asyncpg.Connection,
    *,
    review_id: uuid.UUID,
    project_id: uuid.UUID,
    reviewer_id: uuid.UUID,
    reviewee_id: uuid.UUID,
    rating: int,
    comment: str,
) -> asyncpg.Record:
    """Raises asyncpg.UniqueViolationError if this reviewer already reviewed this project."""
    await conn.execute(
        """INSERT INTO reviews (id, project_id, reviewer_id, reviewee_id, rating, comment)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        review_id,
        project_id,
        reviewer_id,
        reviewee_id,
        rating,
        comment,
    )
    record: asyncpg.Record = await conn.fetchrow(f"{_SELECT} WHERE r.id = $1", review_id)
    return record


async def fetch_reviewable_user(
    conn: asyncpg.Connection, *, user_id: uuid.UUID
) -> asyncpg.Record | None:
    """An active user whose reviews the public may read, with their role; None otherwise.

    A worker who set their profile private hides their reviews with it (the same 404 as
    GET /api/users/{id}); clients have no public profile but their reviews are public, since
    workers choose clients by them.
    """
    record: asyncpg.Record | None = await conn.fetchrow(
        """SELECT u.id, u.role
             FROM users u
             LEFT JOIN user_settings s ON s.user_id = u.id
            WHERE u.id = $1 AND u.is_active AND u.role IN ('worker', 'client')
              AND NOT (u.role = 'worker'
                       AND coalesce(s.privacy ->> 'profile_visibility', 'public') = 'private')""",
        user_id,
    )
    return record


async def list_reviews_of(
    conn: asyncpg.Connection, *, reviewee_id: uuid.UUID, cursor: Cursor | None, limit: int
) -> list[asyncpg.Record]:
    """Reviews about one user, newest first, limit + 1 rows (api/pagination.py)."""
    return list(
        await conn.fetch(
            f"""{_SELECT}
                WHERE r.reviewee_id = $1
                  AND ($2::timestamptz IS NULL OR (r.created_at, r.id) < ($2, $3::uuid))
                ORDER BY r.created_at DESC, r.id DESC
                LIMIT $4""",
            reviewee_id,
            cursor.created_at if cursor else None,
            cursor.id if cursor else None,
            limit + 1,
        )
    )
