"""GET /api/matching/match?projectId= (the seed's endpoint): a project's ranked workers, as the
matching agent keeps them in `analytics.match_scores` (agents/matching.py). Nothing is computed
per request: the answer is one indexed range of a table.

Only the project's client and admins see its ranking; anyone else gets the 404 a project that
does not exist gets, so rankings do not tell who posted what.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Annotated, Final

import asyncpg
from fastapi import Query

from api.auth.dependencies import SignedIn
from api.auth.schemas import AuthenticatedUser
from api.envelope import Envelope, ok
from api.errors import Invalid, NotFound
from api.matching.schemas import Match, MatchedWorker, MatchPage, ScoreParts
from api.pagination import DEFAULT_LIMIT, CursorParam, Limit
from api.routers import DomainRouter
from tables.matching import Weights

router = DomainRouter(prefix="/matching", tags=["matching"])

_WEIGHTS: Final = Weights()

# The project and its ranking's size in one round trip. Ranks are 1..n without gaps, so the
# last rank is the size: one probe of the (project_id, rank) index.
_PROJECT = """
SELECT p.client_id, p.status,
       (SELECT coalesce(max(rank), 0) FROM analytics.match_scores WHERE project_id = p.id)
           AS ranked,
       (SELECT max(computed_at) FROM analytics.match_scores WHERE project_id = p.id)
           AS computed_at
  FROM projects p
 WHERE p.id = $1
"""
# The page is cut from the (project_id, rank) index before the joins, so a page of ten joins ten
# workers, not the whole ranking.
_RANKING = """
SELECT m.worker_id, m.rank, m.score, m.text_score, m.rating_score, m.availability_score,
       m.computed_at, u.name, coalesce(w.headline, '') AS headline,
       coalesce(p.skills, '{}') AS skills, coalesce(w.availability, 'available') AS availability,
       r.bayesian, coalesce(r.count, 0) AS rating_count
  FROM (SELECT * FROM analytics.match_scores
         WHERE project_id = $1 AND rank > $2
         ORDER BY rank
         LIMIT $3) m
  JOIN users u ON u.id = m.worker_id
  LEFT JOIN user_profiles p ON p.user_id = m.worker_id
  LEFT JOIN worker_profiles w ON w.user_id = m.worker_id
  LEFT JOIN analytics.user_ratings r ON r.user_id = m.worker_id
 ORDER BY m.rank
"""


def _cursor(rank: int) -> str:
    return base64.urlsafe_b64encode(f"r{rank}".encode()).decode().rstrip("=")


def _after_rank(cursor: str | None) -> int:
    if cursor is None:
        return 0
    try:
        raw = base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()).decode()
        if not raw.startswith("r"):
            raise ValueError(raw)
        rank = int(raw[1:])
        if rank < 0 or rank > 1_000_000:
            raise ValueError(raw)
        return rank
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise Invalid(
            "invalid request: cursor: not a cursor this endpoint issued",
            details=[{"field": "cursor", "message": "not a cursor this endpoint issued"}],
        ) from exc


@router.get("/match")
async def match(
    caller: SignedIn,
    project_id: Annotated[uuid.UUID, Query(alias="projectId")],
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> Envelope[MatchPage]:
    """The project's workers, best first, with each part of their score."""
    page = await ranked_workers(
        pool=caller.pool, user=caller.user, project_id=project_id, limit=limit, cursor=cursor
    )
    return ok(page)


async def ranked_workers(
    *,
    pool: asyncpg.Pool,
    user: AuthenticatedUser,
    project_id: uuid.UUID,
    limit: int,
    cursor: str | None,
) -> MatchPage:
    """A page of the project's ranking, for its client or an admin (404 for anyone else)."""
    after = _after_rank(cursor)
    async with pool.acquire() as conn:
        project = await conn.fetchrow(_PROJECT, project_id)
        if project is None or (user.role != "admin" and project["client_id"] != user.id):
            raise NotFound("project not found")
        rows = await conn.fetch(_RANKING, project_id, after, limit + 1)
    page = rows[:limit]
    items = [
        Match(
            rank=row["rank"],
            score=row["score"],
            parts=ScoreParts(
                text=row["text_score"],
                rating=row["rating_score"],
                availability=row["availability_score"],
            ),
            worker=MatchedWorker(
                id=row["worker_id"],
                name=row["name"],
                headline=row["headline"],
                skills=list(row["skills"]),
                availability=row["availability"],
                rating=float(row["bayesian"]) if row["bayesian"] is not None else None,
                rating_count=row["rating_count"],
            ),
        )
        for row in page
    ]
    return MatchPage(
        project_id=project_id,
        project_status=project["status"],
        weights=ScoreParts(
            text=_WEIGHTS.text, rating=_WEIGHTS.rating, availability=_WEIGHTS.availability
        ),
        ranked=project["ranked"],
        computed_at=project["computed_at"],
        items=items,
        next_cursor=_cursor(page[-1]["rank"]) if len(rows) > limit else None,
    )
