"""The Elasticsearch requests behind /api/search, built from a search's normalized parameters:
pure functions, testable without a cluster.

- Free text is one `multi_match` (best_fields, fuzzy, OR of the terms): the client's text is
  analyzed as text, never parsed as a query language, so no character in it is special.
- Filters that do not score sit in `bool.filter`. A filter on a faceted field that accepts any of
  several values (availability, status, skills with `any`) goes in `post_filter` instead, and each
  facet counts under every filter but its own: the counts answer "how many would I get if I also
  allowed this value" (disjunctive faceting), so picking one value does not hide the others.
  Skills with `all` narrow like any other filter, so their facet counts drill down.
- Pages go by `search_after` on the sort values of the last hit; every sort ends with `id` asc,
  so the order is total and a page never repeats or skips a document. The cursor carries those
  values and a short hash of the parameters, so it is refused with any other search.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

from api.errors import Invalid

# Buckets per facet: the first page of a filter list; the tail is in `sum_other_doc_count`.
FACET_SIZE: Final = 20
# Characters of the parameters' SHA-256 in a cursor (12 base64url characters, 72 bits): enough
# that two searches never share one by accident; a cursor is not a secret, only a bookmark.
FINGERPRINT_CHARS: Final = 12
# A sort value we issued is a number or a document id; anything longer is not one of ours.
MAX_SORT_VALUE_CHARS: Final = 100

WORKER_TEXT_FIELDS: Final = (
    "name^3",
    "headline^2",
    "skills.text^3",
    "bio",
    "experience",
    "location",
)
PROJECT_TEXT_FIELDS: Final = ("title^3", "skills.text^2", "description")

WorkerSort = Literal["relevance", "rating", "rate_asc", "rate_desc", "newest"]
ProjectSort = Literal["relevance", "newest", "budget_asc", "budget_desc", "deadline", "fewest_bids"]
SkillsMatch = Literal["any", "all"]
# How a sort value is checked when it comes back in a cursor.
ValueKind = Literal["number", "id"]


@dataclass(frozen=True)
class SortKey:
    field: str
    order: Literal["asc", "desc"]
    # For documents without the field. A number, not "_last": "_last" on a float field sorts
    # by ±Infinity, which is not JSON; -1 is below every rating and rate.
    missing: int | str | None = None

    @property
    def clause(self) -> dict[str, Any]:
        options: dict[str, Any] = {"order": self.order}
        if self.missing is not None:
            options["missing"] = self.missing
        return {self.field: options}

    @property
    def kind(self) -> ValueKind:
        return "id" if self.field == "id" else "number"


_BY_ID: Final = SortKey("id", "asc")
_NEWEST: Final = SortKey("created_at", "desc")
_SCORE: Final = SortKey("_score", "desc")

WORKER_SORTS: Final[dict[str, tuple[SortKey, ...]]] = {
    "relevance": (_SCORE, _BY_ID),
    # Unrated workers (no rating yet) last; among equal ratings, the better-proven first.
    "rating": (
        SortKey("rating", "desc", missing=-1),
        SortKey("rating_count", "desc"),
        _BY_ID,
    ),
    # Workers without a rate last either way ("_last" on a long sorts by Long.MAX/MIN).
    "rate_asc": (SortKey("hourly_rate_cents", "asc", missing="_last"), _BY_ID),
    "rate_desc": (SortKey("hourly_rate_cents", "desc", missing=-1), _BY_ID),
    "newest": (_NEWEST, _BY_ID),
}
PROJECT_SORTS: Final[dict[str, tuple[SortKey, ...]]] = {
    "relevance": (_SCORE, _BY_ID),
    "newest": (_NEWEST, _BY_ID),
    "budget_asc": (SortKey("budget_cents", "asc"), _BY_ID),
    "budget_desc": (SortKey("budget_cents", "desc"), _BY_ID),
    # Soonest deadline first; projects without one after all that have one.
    "deadline": (SortKey("deadline", "asc", missing="_last"), _BY_ID),
    # The least contested first; among equals, the newest.
    "fewest_bids": (SortKey("bid_count", "asc"), _NEWEST, _BY_ID),
}


@dataclass(frozen=True)
class WorkerSearch:
    """GET /api/search/workers, normalized: skills lowercased, deduplicated and sorted, the sort
    resolved (relevance only with text to score)."""

    sort: WorkerSort
    q: str | None = None
    skills: tuple[str, ...] = ()
    skills_match: SkillsMatch = "any"
    availability: tuple[str, ...] = ()
    min_rating: float | None = None
    max_rating: float | None = None
    min_rate_cents: int | None = None
    max_rate_cents: int | None = None
    location: str | None = None


@dataclass(frozen=True)
class ProjectViewer:
    """Who searches projects, as far as visibility goes: the public and workers see open
    projects; a client also their own in any status; an admin every project."""

    role: Literal["public", "client", "admin"]
    user_id: str | None = None


@dataclass(frozen=True)
class ProjectSearch:
    sort: ProjectSort
    viewer: ProjectViewer
    q: str | None = None
    skills: tuple[str, ...] = ()
    skills_match: SkillsMatch = "any"
    min_budget_cents: int | None = None
    max_budget_cents: int | None = None
    currency: str | None = None
    statuses: tuple[str, ...] = ()


def worker_sort(requested: WorkerSort | None, q: str | None) -> WorkerSort:
    """The sort to apply: relevance needs text to score; without it, the best rated first."""
    if requested is None or requested == "relevance":
        return "relevance" if q else "rating"
    return requested


def project_sort(requested: ProjectSort | None, q: str | None) -> ProjectSort:
    """The sort to apply: relevance needs text to score; without it, the newest first."""
    if requested is None or requested == "relevance":
        return "relevance" if q else "newest"
    return requested


# --- request bodies


def worker_request(
    search: WorkerSearch, *, size: int, after: list[Any] | None = None
) -> dict[str, Any]:
    """The keyword arguments of `AsyncElasticsearch.search` for one page of workers."""
    # Hidden workers are indexed as {id, public: false}: never a hit, never counted.
    filters: list[dict[str, Any]] = [{"term": {"public": True}}]
    filters += _range("rating", search.min_rating, search.max_rating)
    filters += _range("hourly_rate_cents", search.min_rate_cents, search.max_rate_cents)
    if search.location:
        # Every word of it, analyzed: "berlin" finds "Berlin, Germany".
        filters.append({"match": {"location": {"query": search.location, "operator": "and"}}})
    facets: dict[str, tuple[str, list[dict[str, Any]]]] = {
        "availability": ("availability", _any_of("availability", search.availability)),
    }
    filters, facets = _skills(search.skills, search.skills_match, filters, facets)
    return _request(
        text=_text(search.q, WORKER_TEXT_FIELDS),
        filters=filters,
        facets=facets,
        sort=WORKER_SORTS[search.sort],
        size=size,
        after=after,
    )


def project_request(
    search: ProjectSearch, *, size: int, after: list[Any] | None = None
) -> dict[str, Any]:
    """The keyword arguments of `AsyncElasticsearch.search` for one page of projects."""
    filters = [*_visible_projects(search.viewer)]
    filters += _range("budget_cents", search.min_budget_cents, search.max_budget_cents)
    if search.currency:
        filters.append({"term": {"currency": search.currency}})
    facets: dict[str, tuple[str, list[dict[str, Any]]]] = {
        "status": ("status", _any_of("status", search.statuses)),
    }
    filters, facets = _skills(search.skills, search.skills_match, filters, facets)
    return _request(
        text=_text(search.q, PROJECT_TEXT_FIELDS),
        filters=filters,
        facets=facets,
        sort=PROJECT_SORTS[search.sort],
        size=size,
        after=after,
    )


def _visible_projects(viewer: ProjectViewer) -> list[dict[str, Any]]:
    open_ = {"term": {"status": "open"}}
    if viewer.role == "admin":
        return []
    if viewer.role == "client" and viewer.user_id is not None:
        own = {"term": {"client_id": viewer.user_id}}
        return [{"bool": {"should": [open_, own], "minimum_should_match": 1}}]
    return [open_]


def _text(q: str | None, fields: tuple[str, ...]) -> dict[str, Any] | None:
    if not q:
        return None
    return {
        "multi_match": {
            "query": q,
            "fields": list(fields),
            # The best field's score, plus a share of the others': a name and a skill both
            # matching beats either alone.
            "type": "best_fields",
            "tie_breaker": 0.3,
            "operator": "or",
            # One typo per 3-5 letters, two beyond; the first letter must be right, which keeps
            # the expansions few ("pyhton" finds python, "java" does not find "lava").
            "fuzziness": "AUTO",
            "prefix_length": 1,
        }
    }


def _range(field: str, low: float | None, high: float | None) -> list[dict[str, Any]]:
    bounds = {name: value for name, value in (("gte", low), ("lte", high)) if value is not None}
    return [{"range": {field: bounds}}] if bounds else []


def _any_of(field: str, values: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{"terms": {field: list(values)}}] if values else []


def _skills(
    skills: tuple[str, ...],
    match: SkillsMatch,
    filters: list[dict[str, Any]],
    facets: dict[str, tuple[str, list[dict[str, Any]]]],
) -> tuple[list[dict[str, Any]], dict[str, tuple[str, list[dict[str, Any]]]]]:
    """`any` is one more disjunctive facet filter; `all` (a term per skill) narrows the query
    itself, facets included. The field's normalizer lowercases, as the keys already are."""
    if match == "all":
        return [*filters, *({"term": {"skills": skill}} for skill in skills)], {
            "skills": ("skills", []),
            **facets,
        }
    return filters, {"skills": ("skills", _any_of("skills", skills)), **facets}


def _request(
    *,
    text: dict[str, Any] | None,
    filters: list[dict[str, Any]],
    facets: dict[str, tuple[str, list[dict[str, Any]]]],
    sort: tuple[SortKey, ...],
    size: int,
    after: list[Any] | None,
) -> dict[str, Any]:
    query: dict[str, Any] = {"bool": {"filter": filters}}
    if text is not None:
        query["bool"]["must"] = [text]
    facet_filters = {name: clauses for name, (_, clauses) in facets.items()}
    aggs = {
        name: {
            "filter": _all_of(
                [c for other, cs in facet_filters.items() if other != name for c in cs]
            ),
            "aggs": {"values": {"terms": {"field": field, "size": FACET_SIZE}}},
        }
        for name, (field, _) in facets.items()
    }
    request: dict[str, Any] = {
        "query": query,
        "aggs": aggs,
        "sort": [key.clause for key in sort],
        "size": size,
        "track_total_hits": True,
        # Scores are computed under a field sort too, so every hit shows how well it matched.
        "track_scores": text is not None,
    }
    post = [clause for clauses in facet_filters.values() for clause in clauses]
    if post:
        request["post_filter"] = _all_of(post)
    if after is not None:
        request["search_after"] = after
    return request


def _all_of(clauses: list[dict[str, Any]]) -> dict[str, Any]:
    return {"bool": {"filter": clauses}} if clauses else {"match_all": {}}


def facet_buckets(aggregations: dict[str, Any] | None, name: str) -> list[dict[str, Any]]:
    """One facet's `{value, count}` buckets from a search response's aggregations."""
    buckets = ((aggregations or {}).get(name) or {}).get("values", {}).get("buckets", [])
    return [{"value": str(b["key"]), "count": int(b["doc_count"])} for b in buckets]


# --- cursors


def fingerprint(search: WorkerSearch | ProjectSearch) -> str:
    """A short hash of everything that selects and orders the results (not the page size)."""
    raw = json.dumps([type(search).__name__, asdict(search)], sort_keys=True, default=str)
    digest = hashlib.sha256(raw.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:FINGERPRINT_CHARS]


def encode_cursor(search: WorkerSearch | ProjectSearch, sort_values: list[Any]) -> str:
    raw = json.dumps([fingerprint(search), sort_values], separators=(",", ":"), allow_nan=False)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(
    value: str | None, search: WorkerSearch | ProjectSearch, sort: tuple[SortKey, ...]
) -> list[Any] | None:
    """The sort values to search after; a 422 naming `cursor` when the value is not a cursor
    we issued, or one issued for a different search."""
    if value is None:
        return None
    try:
        padded = value + "=" * (-len(value) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode()), parse_constant=_no_nan)
    except (ValueError, TypeError, binascii.Error, RecursionError) as exc:
        raise bad_cursor("not a cursor this API issued") from exc
    if not (
        isinstance(decoded, list)
        and len(decoded) == 2
        and isinstance(decoded[0], str)
        and isinstance(decoded[1], list)
    ):
        raise bad_cursor("not a cursor this API issued")
    mark, values = decoded[0], list(decoded[1])
    if mark != fingerprint(search):
        raise bad_cursor("issued for a different search; start again without it")
    if len(values) != len(sort) or not all(map(_fits, sort, values)):
        raise bad_cursor("not a cursor this API issued")
    return values


def _no_nan(constant: str) -> Any:
    raise ValueError(f"{constant} is not a sort value")


def _fits(key: SortKey, value: Any) -> bool:
    if key.kind == "id":
        return isinstance(value, str) and 0 < len(value) <= MAX_SORT_VALUE_CHARS
    # A long (epoch millis, counts, cents, Long.MAX for "_last") or a float (scores, ratings).
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and -(2**63) <= value < 2**63
    )


def bad_cursor(message: str) -> Invalid:
    return Invalid(
        f"invalid request: cursor: {message}",
        details=[{"field": "cursor", "message": message, "type": "cursor"}],
    )
