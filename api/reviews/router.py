"""/api/reviews: a party of a completed project reviews the other; anyone reads a user's
reviews, at GET /api/users/{id}/reviews or GET /api/reviews?userId=."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Query, status

from api.auth.dependencies import SignedIn
from api.envelope import Envelope, ok
from api.pagination import DEFAULT_LIMIT, CursorParam, Limit, decode_cursor
from api.reviews import service
from api.reviews.schemas import ReviewCreate, ReviewOut, ReviewPage
from api.routers import DomainRouter
from api.state import PoolDep

router = DomainRouter(tags=["reviews"])


@router.post("/reviews", status_code=status.HTTP_201_CREATED)
async def create_review(body: ReviewCreate, caller: SignedIn) -> Envelope[ReviewOut]:
    return ok(await service.create_review(pool=caller.pool, user=caller.user, body=body))


@router.get("/reviews")
async def list_reviews(
    user_id: Annotated[uuid.UUID, Query(alias="userId")],
    pool: PoolDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> Envelope[ReviewPage]:
    """Reviews about one user, newest first."""
    page = await service.list_reviews_of(
        pool=pool, user_id=user_id, cursor=decode_cursor(cursor), limit=limit
    )
    return ok(page)


@router.get("/users/{user_id}/reviews")
async def list_user_reviews(
    user_id: uuid.UUID, pool: PoolDep, limit: Limit = DEFAULT_LIMIT, cursor: CursorParam = None
) -> Envelope[ReviewPage]:
    """Reviews about one user, newest first."""
    page = await service.list_reviews_of(
        pool=pool, user_id=user_id, cursor=decode_cursor(cursor), limit=limit
    )
    return ok(page)
