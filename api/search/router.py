"""/api/search: full-text search over workers and projects, served from the Elasticsearch indices
the search indexer keeps (agents/search.py, tables/search.py), with filters, facets and
`search_after` pages (api/search/queries.py builds every request).

Who finds what: only workers who are public (role worker, active, profile public); open projects
for the public and workers, plus their own in any status for a client, every project for an
admin. Search is a read model: a change shows here once the indexer has applied it.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Final

from elasticsearch import ApiError, AsyncElasticsearch, NotFoundError, TransportError
from fastapi import Query

from api.auth.dependencies import Viewing
from api.envelope import Envelope, ok
from api.errors import Invalid, ServiceUnavailable
from api.money import MAX_AMOUNT_CENTS
from api.pagination import DEFAULT_LIMIT, Limit
from api.projects.router import skill_keys
from api.projects.schemas import MAX_REQUIRED_SKILLS, ProjectStatus
from api.routers import DomainRouter
from api.search import queries
from api.search.queries import (
    ProjectSearch,
    ProjectSort,
    ProjectViewer,
    SkillsMatch,
    WorkerSearch,
    WorkerSort,
)
from api.search.schemas import (
    FacetBucket,
    ProjectFacets,
    ProjectHit,
    ProjectResults,
    WorkerFacets,
    WorkerHit,
    WorkerResults,
)
from api.state import StateDep
from api.users.schemas import MAX_HOURLY_RATE_CENTS, Availability
from tables.search import PROJECTS, WORKERS

log = logging.getLogger(__name__)

router = DomainRouter(prefix="/search", tags=["search"])

# Longer text is not a search a person typed; bounded before it reaches the analyzer.
MAX_QUERY_CHARS: Final = 200
# A cursor is ~60-140 characters (a 12-character hash and up to three sort values).
MAX_CURSOR_CHARS: Final = 300
# A search answers in well under a second on a healthy cluster (noida-db: ~0.4 s at 10k
# documents); a client waits at most this long, once, before a 503 says to come back.
SEARCH_TIMEOUT_S: Final = 5.0
RETRY_AFTER_S: Final = 5

Query_ = Annotated[
    str | None,
    Query(
        max_length=MAX_QUERY_CHARS,
        description="free text, matched word by word (with typos) in the main fields",
    ),
]
Skills = Annotated[
    list[str] | None,
    Query(max_length=MAX_REQUIRED_SKILLS, description="repeat or comma-separate; any case"),
]
SkillsMatchParam = Annotated[
    SkillsMatch,
    Query(alias="skillsMatch", description="any: at least one skill; all: every skill"),
]
Cursor = Annotated[
    str | None,
    Query(max_length=MAX_CURSOR_CHARS, description="nextCursor of the previous page"),
]


@router.get("/workers")
async def search_workers(
    state: StateDep,
    q: Query_ = None,
    skills: Skills = None,
    skills_match: SkillsMatchParam = "any",
    availability: Annotated[list[Availability] | None, Query(max_length=3)] = None,
    min_rating: Annotated[float | None, Query(alias="minRating", ge=0, le=5)] = None,
    max_rating: Annotated[float | None, Query(alias="maxRating", ge=0, le=5)] = None,
    min_rate: Annotated[
        int | None,
        Query(alias="minRate", ge=0, le=MAX_HOURLY_RATE_CENTS, description="cents per hour"),
    ] = None,
    max_rate: Annotated[
        int | None,
        Query(alias="maxRate", ge=0, le=MAX_HOURLY_RATE_CENTS, description="cents per hour"),
    ] = None,
    location: Annotated[str | None, Query(max_length=200)] = None,
    sort: Annotated[
        WorkerSort | None, Query(description="default: relevance with q, else rating")
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Envelope[WorkerResults]:
    """Public workers matching `q` and every filter; `skills` and `availability` may repeat."""
    _ordered("minRating", min_rating, "maxRating", max_rating)
    _ordered("minRate", min_rate, "maxRate", max_rate)
    text = _text("q", q)
    search = WorkerSearch(
        sort=queries.worker_sort(sort, text),
        q=text,
        skills=sorted_skill_keys(skills or []),
        skills_match=skills_match,
        availability=tuple(sorted(set(availability or ()))),
        min_rating=min_rating,
        max_rating=max_rating,
        min_rate_cents=min_rate,
        max_rate_cents=max_rate,
        location=_text("location", location),
    )
    after = queries.decode_cursor(cursor, search, queries.WORKER_SORTS[search.sort])
    request = queries.worker_request(search, size=limit + 1, after=after)
    response = await _search(
        state.search, WORKERS.name(state.settings.search_index_prefix), request
    )
    hits, next_cursor = _page(response, limit, search)
    aggregations = response.get("aggregations")
    return ok(
        WorkerResults(
            items=[WorkerHit.from_hit(hit) for hit in hits],
            total=_total(response),
            facets=WorkerFacets(
                skills=_buckets(aggregations, "skills"),
                availability=_buckets(aggregations, "availability"),
            ),
            next_cursor=next_cursor,
        )
    )


@router.get("/projects")
async def search_projects(
    visitor: Viewing,
    q: Query_ = None,
    skills: Skills = None,
    skills_match: SkillsMatchParam = "any",
    min_budget: Annotated[
        int | None, Query(alias="minBudget", ge=0, le=MAX_AMOUNT_CENTS, description="cents")
    ] = None,
    max_budget: Annotated[
        int | None, Query(alias="maxBudget", ge=0, le=MAX_AMOUNT_CENTS, description="cents")
    ] = None,
    currency: Annotated[str | None, Query(pattern=r"^[A-Za-z]{3}$")] = None,
    status_: Annotated[
        list[ProjectStatus] | None,
        Query(alias="status", max_length=7, description="narrows what the caller may see"),
    ] = None,
    sort: Annotated[
        ProjectSort | None, Query(description="default: relevance with q, else newest")
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Envelope[ProjectResults]:
    """Projects the caller may see matching `q` and every filter: open ones for everyone, a
    client's own in any status, all for an admin."""
    _ordered("minBudget", min_budget, "maxBudget", max_budget)
    text = _text("q", q)
    if visitor.user is None or visitor.user.role not in ("client", "admin"):
        who = ProjectViewer(role="public")
    elif visitor.user.role == "admin":
        who = ProjectViewer(role="admin")
    else:
        who = ProjectViewer(role="client", user_id=str(visitor.user.id))
    search = ProjectSearch(
        sort=queries.project_sort(sort, text),
        viewer=who,
        q=text,
        skills=sorted_skill_keys(skills or []),
        skills_match=skills_match,
        min_budget_cents=min_budget,
        max_budget_cents=max_budget,
        currency=currency.upper() if currency else None,
        statuses=tuple(sorted(set(status_ or ()))),
    )
    after = queries.decode_cursor(cursor, search, queries.PROJECT_SORTS[search.sort])
    request = queries.project_request(search, size=limit + 1, after=after)
    index = PROJECTS.name(visitor.state.settings.search_index_prefix)
    response = await _search(visitor.state.search, index, request)
    hits, next_cursor = _page(response, limit, search)
    aggregations = response.get("aggregations")
    return ok(
        ProjectResults(
            items=[ProjectHit.from_hit(hit) for hit in hits],
            total=_total(response),
            facets=ProjectFacets(
                skills=_buckets(aggregations, "skills"),
                status=_buckets(aggregations, "status"),
            ),
            next_cursor=next_cursor,
        )
    )


# --- parameters


def _ordered(low_name: str, low: float | None, high_name: str, high: float | None) -> None:
    if low is not None and high is not None and low > high:
        message = f"must not exceed {high_name}"
        raise Invalid(
            f"invalid request: {low_name}: {message}",
            details=[{"field": low_name, "message": message, "type": "range"}],
        )


def _text(field: str, value: str | None) -> str | None:
    """Free text with its whitespace collapsed (so "a  b" and "a b" are one search, one
    cursor); None when blank. NUL is refused, as in every body of this API."""
    if value is None:
        return None
    if "\x00" in value:
        message = "must not contain NUL (U+0000) characters"
        raise Invalid(
            f"invalid request: {field}: {message}",
            details=[{"field": field, "message": message, "type": "nul_character"}],
        )
    return " ".join(value.split()) or None


def sorted_skill_keys(values: list[str]) -> tuple[str, ...]:
    """The skills asked for, checked and lowercased as the board's `skills`, in sorted order: one
    search, one cursor, however the client ordered them."""
    return tuple(sorted(skill_keys(values)))


# --- Elasticsearch


async def _search(
    client: AsyncElasticsearch | None, index: str, request: dict[str, Any]
) -> dict[str, Any]:
    """The search response; an empty one when the index does not exist yet (the indexer
    creates it at start), a 503 when Elasticsearch cannot answer. Elasticsearch refusing
    the sort values a cursor carries (a 400: a forged cursor of the right shape) is that
    cursor's fault."""
    if client is None:
        raise _unavailable("search is not configured on this server")
    try:
        response = await client.options(request_timeout=SEARCH_TIMEOUT_S, max_retries=0).search(
            index=index, **request
        )
    except NotFoundError:
        return {}
    except TransportError as exc:  # refused, reset, timed out
        log.warning("search unavailable: %s", exc)
        raise _unavailable("search is unavailable right now") from exc
    except ApiError as exc:
        if exc.status_code == 429 or exc.status_code >= 500:
            log.warning("search unavailable: %s", exc)
            raise _unavailable("search is unavailable right now") from exc
        if exc.status_code == 400 and "search_after" in request:
            raise queries.bad_cursor("not a cursor this API issued") from exc
        raise
    body: dict[str, Any] = response.body
    return body


def _unavailable(message: str) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"{message}; try again in {RETRY_AFTER_S} seconds",
        code="SEARCH_UNAVAILABLE",
        headers={"Retry-After": str(RETRY_AFTER_S)},
        details={"retryAfter": RETRY_AFTER_S},
    )


def _page(
    response: dict[str, Any], limit: int, search: WorkerSearch | ProjectSearch
) -> tuple[list[Any], str | None]:
    """This page's hits (the request asked for one more, only to know whether more exist) and
    the cursor to the next page: the sort values of the page's last hit."""
    hits: list[dict[str, Any]] = (response.get("hits") or {}).get("hits") or []
    page = hits[:limit]
    if len(hits) <= limit:
        return page, None
    return page, queries.encode_cursor(search, page[-1]["sort"])


def _total(response: dict[str, Any]) -> int:
    total = (response.get("hits") or {}).get("total") or {}
    return int(total.get("value", 0)) if isinstance(total, dict) else int(total)


def _buckets(aggregations: dict[str, Any] | None, name: str) -> list[FacetBucket]:
    return [FacetBucket(**bucket) for bucket in queries.facet_buckets(aggregations, name)]
