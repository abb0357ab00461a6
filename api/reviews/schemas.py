"""Bodies of /api/reviews."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from api.projects.schemas import bounded
from api.schemas import ApiModel, ResponseModel


class ReviewCreate(ApiModel):
    """Who is reviewed is derived from the project: never taken from the body."""

    # Optional as in the seed's `{rating, comment}`: left out, it is the caller's one completed
    # project not reviewed yet (api/projects/implied.py).
    project_id: uuid.UUID | None = None
    rating: Annotated[int, Field(strict=True, ge=1, le=5)]
    comment: Annotated[str, bounded(2000)] = ""


class ReviewOut(ResponseModel):
    id: uuid.UUID
    project_id: uuid.UUID
    reviewer_id: uuid.UUID
    reviewer_name: str
    reviewee_id: uuid.UUID
    reviewee_role: Literal["worker", "client"]
    rating: int
    comment: str
    created_at: datetime


class ReviewPage(ResponseModel):
    items: list[ReviewOut]
    next_cursor: str | None
