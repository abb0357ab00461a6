"""Bodies of /api/search: a page of hits as the API's other lists show them (camelCase, money in
integer minor units with its currency), the total, the facets and the next page's cursor."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from api.schemas import ResponseModel

# A project's description in a hit: enough to judge it from the list; the full text is at
# GET /api/projects/{id}.
DESCRIPTION_PREVIEW_CHARS: Final = 300


class FacetBucket(ResponseModel):
    # Skills as the index keeps them: lowercased, so "Python" and "python" are one bucket.
    value: str
    count: int


class WorkerHit(ResponseModel):
    id: str
    name: str
    headline: str
    skills: list[str]
    location: str
    # As GET /api/users/{id} shows it: integer minor units of `currency`; null when not set.
    hourly_rate_cents: int | None
    currency: str
    availability: str
    # The Bayesian average (what `sort=rating` orders by), and the plain one with its count.
    rating: float | None
    rating_average: float | None
    rating_count: int
    completed_projects: int
    # How well the hit matched `q`; null without `q`.
    score: float | None

    @classmethod
    def from_hit(cls, hit: dict[str, Any]) -> WorkerHit:
        source: dict[str, Any] = hit.get("_source") or {}
        return cls(
            id=str(source.get("id", hit.get("_id"))),
            name=source.get("name") or "",
            headline=source.get("headline") or "",
            skills=list(source.get("skills") or []),
            location=source.get("location") or "",
            hourly_rate_cents=source.get("hourly_rate_cents"),
            currency=source.get("currency") or "USD",
            availability=source.get("availability") or "available",
            rating=source.get("rating"),
            rating_average=source.get("rating_average"),
            rating_count=source.get("rating_count") or 0,
            completed_projects=source.get("completed_projects") or 0,
            score=hit.get("_score"),
        )


class ProjectHit(ResponseModel):
    id: str
    client_id: str
    title: str
    # At most DESCRIPTION_PREVIEW_CHARS characters, cut at a word and ended with "…" when longer.
    description: str
    skills: list[str]
    # As GET /api/projects shows it: integer minor units of `currency`.
    budget_cents: int
    currency: str
    status: str
    deadline: datetime | None
    bid_count: int
    created_at: datetime
    score: float | None

    @classmethod
    def from_hit(cls, hit: dict[str, Any]) -> ProjectHit:
        source: dict[str, Any] = hit.get("_source") or {}
        return cls(
            id=str(source.get("id", hit.get("_id"))),
            client_id=str(source.get("client_id", "")),
            title=source.get("title") or "",
            description=preview(source.get("description") or ""),
            skills=list(source.get("skills") or []),
            budget_cents=source.get("budget_cents") or 0,
            currency=source.get("currency") or "USD",
            status=source.get("status") or "",
            deadline=source.get("deadline"),
            bid_count=source.get("bid_count") or 0,
            created_at=source["created_at"],
            score=hit.get("_score"),
        )


def preview(text: str, limit: int = DESCRIPTION_PREVIEW_CHARS) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    # Cut at the last word boundary unless that throws away most of the preview.
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


class WorkerFacets(ResponseModel):
    skills: list[FacetBucket]
    availability: list[FacetBucket]


class ProjectFacets(ResponseModel):
    skills: list[FacetBucket]
    status: list[FacetBucket]


class WorkerResults(ResponseModel):
    items: list[WorkerHit]
    # Every match, not only this page's.
    total: int
    # Each facet counts under the query and every filter but its own (see api/search/queries.py).
    facets: WorkerFacets
    # Pass back as `cursor` (with the same parameters) for the next page; null on the last one.
    next_cursor: str | None


class ProjectResults(ResponseModel):
    items: list[ProjectHit]
    total: int
    facets: ProjectFacets
    next_cursor: str | None
