"""/api/search: workers and projects found by text, narrowed by filters, counted by facets and
paged by cursor, on noida-db (Elasticsearch's API) with indices of the test's own prefix, loaded
with the very documents the indexer writes (tables/documents.py)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from elasticsearch import AsyncElasticsearch
from elasticsearch.helpers import async_bulk
from fastapi import FastAPI

from api.errors import Invalid
from api.search import queries
from api.search.schemas import DESCRIPTION_PREVIEW_CHARS
from infrastructure.settings import Settings
from tables.documents import ProjectDocument, WorkerDocument
from tables.search import PROJECTS, WORKERS, IndexSpec
from tests.api.conftest import (
    Account,
    api_of_its_own,
    client_from,
    error_fields,
    register,
    unique_ip,
)
from tests.api.gigs import make_admin

WORKERS_URL = "/api/search/workers"
PROJECTS_URL = "/api/search/projects"


def at(month: int) -> datetime:
    return datetime(2024, month, 1, tzinfo=UTC)


def worker(**fields: Any) -> WorkerDocument:
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "version": 1,
        "is_worker": True,
        "public": True,
        "name": "A Worker",
        "headline": "",
        "bio": "",
        "skills": (),
        "experience": "",
        "location": "",
        "hourly_rate_cents": None,
        "currency": "USD",
        "availability": "available",
        "rating": None,
        "rating_average": None,
        "rating_count": 0,
        "completed_projects": 0,
        "created_at": at(1),
        "updated_at": at(6),
    }
    values.update(fields)
    return WorkerDocument(**values)


def project(client: Account, **fields: Any) -> ProjectDocument:
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "version": 1,
        "client_id": str(client.id),
        "title": "A project",
        "description": "",
        "skills": (),
        "budget_cents": 100_000,
        "currency": "USD",
        "status": "open",
        "deadline": None,
        "bid_count": 0,
        "created_at": at(1),
        "updated_at": at(6),
    }
    values.update(fields)
    return ProjectDocument(**values)


@dataclass
class Corpus:
    app: FastAPI
    http: httpx.AsyncClient
    workers: dict[str, WorkerDocument]
    projects: dict[str, ProjectDocument]
    client_a: Account
    client_b: Account
    worker: Account
    admin: Account

    def wid(self, name: str) -> str:
        return self.workers[name].id

    def pid(self, name: str) -> str:
        return self.projects[name].id


async def create_index(es: AsyncElasticsearch, spec: IndexSpec, prefix: str) -> None:
    alias = spec.name(prefix)
    await es.indices.create(
        index=f"{alias}-v{spec.version}-test",
        mappings=spec.mappings,
        settings=spec.settings,
        aliases={alias: {}},
    )


@pytest.fixture(scope="module")
async def es(elasticsearch_url: str) -> AsyncIterator[AsyncElasticsearch]:
    client = AsyncElasticsearch(elasticsearch_url)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture(scope="module")
async def corpus(settings: Settings, es: AsyncElasticsearch) -> AsyncIterator[Corpus]:
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    own = settings.model_copy(update={"search_index_prefix": prefix})
    async with api_of_its_own(own) as app, client_from(app, ip=unique_ip()) as http:
        client_a = await register(http, role="client")
        client_b = await register(http, role="client")
        someone = await register(http, role="worker")
        admin = await make_admin(app, http)
        long_text = "Scrape product pages politely and store them. " * 20
        workers = {
            "kafka": worker(
                name="Ann Example",
                headline="Python and Kafka engineer",
                bio="Streaming pipelines end to end.",
                skills=("Python", "Kafka"),
                hourly_rate_cents=8_000,
                rating=4.8,
                rating_average=4.9,
                rating_count=10,
                completed_projects=12,
                created_at=at(1),
            ),
            "rust": worker(
                name="Bo Example",
                headline="Systems programmer",
                bio="Low-level work, and the occasional python script.",
                skills=("Rust", "Go"),
                hourly_rate_cents=12_000,
                availability="busy",
                rating=4.2,
                rating_average=4.5,
                rating_count=5,
                created_at=at(2),
            ),
            "design": worker(
                name="Cy Example",
                headline="Illustrator",
                bio="Hand-drawn illustration and ceramics.",
                skills=("Figma", "CSS"),
                availability="unavailable",
                created_at=at(3),
            ),
            "data": worker(
                name="Di Example",
                headline="Data analyst",
                bio="Dashboards and reports.",
                skills=("Python", "SQL"),
                location="Berlin, Germany",
                hourly_rate_cents=5_000,
                rating=3.9,
                rating_average=4.0,
                rating_count=2,
                created_at=at(4),
            ),
            # Hidden, as the indexer writes them: nothing but the id and the flag...
            "hidden": worker(public=False, headline="Python expert", skills=("Python",)),
        }
        # ...and one with every field still there: the filter, not the document's
        # emptiness, keeps it out.
        full_but_private = {
            **worker(headline="Python expert", skills=("Python",), created_at=at(5)).source(),
            "public": False,
        }
        projects = {
            "pipeline": project(
                client_a,
                title="Kafka streaming pipeline",
                description="Move events from Kafka to PostgreSQL.",
                skills=("Python", "Kafka"),
                budget_cents=150_000,
                deadline=datetime(2030, 6, 1, tzinfo=UTC),
                bid_count=3,
                created_at=at(1),
            ),
            "cli": project(
                client_a,
                title="Rust command-line tool",
                skills=("Rust",),
                budget_cents=50_000,
                status="in_progress",
                deadline=datetime(2030, 3, 1, tzinfo=UTC),
                bid_count=1,
                created_at=at(2),
            ),
            "landing": project(
                client_b,
                title="Landing page design",
                skills=("Figma", "CSS"),
                budget_cents=80_000,
                currency="EUR",
                created_at=at(3),
            ),
            "cleanup": project(
                client_b,
                title="Python data cleanup",
                skills=("Python", "SQL"),
                budget_cents=30_000,
                status="completed",
                bid_count=5,
                created_at=at(4),
            ),
            "scraper": project(
                client_b,
                title="Python scraper",
                description=long_text,
                skills=("Python",),
                budget_cents=20_000,
                deadline=datetime(2030, 1, 1, tzinfo=UTC),
                bid_count=2,
                created_at=at(5),
            ),
        }
        await create_index(es, WORKERS, prefix)
        await create_index(es, PROJECTS, prefix)
        actions = [
            {"_index": WORKERS.name(prefix), "_id": doc.id, "_source": doc.source()}
            for doc in workers.values()
        ]
        actions.append(
            {
                "_index": WORKERS.name(prefix),
                "_id": full_but_private["id"],
                "_source": full_but_private,
            }
        )
        actions += [
            {"_index": PROJECTS.name(prefix), "_id": doc.id, "_source": doc.source()}
            for doc in projects.values()
        ]
        await async_bulk(es, actions, refresh=True)
        try:
            yield Corpus(app, http, workers, projects, client_a, client_b, someone, admin)
        finally:
            for spec in (WORKERS, PROJECTS):
                await es.indices.delete(index=f"{spec.name(prefix)}-v{spec.version}-test")


async def search(
    corpus: Corpus, url: str, as_: Account | None = None, **params: Any
) -> dict[str, Any]:
    response = await corpus.http.get(url, params=params, headers=as_.headers if as_ else {})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()["data"]
    return body


def ids(page: dict[str, Any]) -> list[str]:
    return [item["id"] for item in page["items"]]


def names(response: httpx.Response, field: str) -> bool:
    """Whether a 422 names `field` (ours name it bare, FastAPI's as `query.<field>`)."""
    fields = error_fields(response)
    return field in fields or f"query.{field}" in fields


def facet(page: dict[str, Any], name: str) -> dict[str, int]:
    return {bucket["value"]: bucket["count"] for bucket in page["facets"][name]}


# --- workers: text


async def test_a_skill_finds_its_workers_the_better_match_first(corpus: Corpus) -> None:
    page = await search(corpus, WORKERS_URL, q="python")
    # Skill and headline beat a passing mention in a bio; the private experts never show.
    assert ids(page) == [corpus.wid("kafka"), corpus.wid("data"), corpus.wid("rust")]
    assert page["total"] == 3
    scores = [item["score"] for item in page["items"]]
    assert all(isinstance(score, float) for score in scores)
    assert scores == sorted(scores, reverse=True)


async def test_words_of_a_bio_find_the_worker(corpus: Corpus) -> None:
    page = await search(corpus, WORKERS_URL, q="ceramics")
    assert ids(page) == [corpus.wid("design")]


async def test_a_typo_still_finds_the_skill(corpus: Corpus) -> None:
    page = await search(corpus, WORKERS_URL, q="kafak")
    assert ids(page)[0] == corpus.wid("kafka")


async def test_a_worker_hit_has_the_profile_summary_in_camel_case(corpus: Corpus) -> None:
    page = await search(corpus, WORKERS_URL, q="streaming")
    assert page["items"] == [
        {
            "id": corpus.wid("kafka"),
            "name": "Ann Example",
            "headline": "Python and Kafka engineer",
            "skills": ["Python", "Kafka"],
            "location": "",
            "hourlyRateCents": 8_000,
            "currency": "USD",
            "availability": "available",
            "rating": 4.8,
            "ratingAverage": 4.9,
            "ratingCount": 10,
            "completedProjects": 12,
            "score": page["items"][0]["score"],
        }
    ]
    assert page["nextCursor"] is None


@pytest.mark.parametrize(
    "q", ['"(python', "kafka AND OR NOT", "a:b/c\\d*?~^{}[]<>!", "'; DROP TABLE users; --"]
)
async def test_special_characters_in_the_text_are_only_text(corpus: Corpus, q: str) -> None:
    await search(corpus, WORKERS_URL, q=q)
    await search(corpus, PROJECTS_URL, q=q)


async def test_private_workers_never_appear(corpus: Corpus) -> None:
    for params in ({}, {"q": "python expert"}, {"skills": "python"}, {"sort": "newest"}):
        page = await search(corpus, WORKERS_URL, limit=100, **params)
        assert corpus.wid("hidden") not in ids(page)
        assert len(ids(page)) == page["total"] <= 4
    everyone = await search(corpus, WORKERS_URL, limit=100)
    assert everyone["total"] == 4


# --- workers: filters and facets


async def test_skills_match_any_or_all(corpus: Corpus) -> None:
    any_ = await search(corpus, WORKERS_URL, skills="python,rust", sort="newest")
    assert ids(any_) == [corpus.wid("data"), corpus.wid("rust"), corpus.wid("kafka")]
    repeated = await corpus.http.get(
        WORKERS_URL, params=[("skills", "Python"), ("skills", "KAFKA"), ("skillsMatch", "all")]
    )
    assert ids(repeated.json()["data"]) == [corpus.wid("kafka")]


async def test_rating_and_rate_ranges(corpus: Corpus) -> None:
    well_rated = await search(corpus, WORKERS_URL, minRating=4)
    assert ids(well_rated) == [corpus.wid("kafka"), corpus.wid("rust")]
    # Unrated workers have no rating to be under 4.
    assert ids(await search(corpus, WORKERS_URL, maxRating=4)) == [corpus.wid("data")]
    in_budget = await search(corpus, WORKERS_URL, minRate=6_000, maxRate=12_000, sort="rate_asc")
    assert ids(in_budget) == [corpus.wid("kafka"), corpus.wid("rust")]


async def test_availability_and_location_filters(corpus: Corpus) -> None:
    busy = await search(corpus, WORKERS_URL, availability="busy")
    assert ids(busy) == [corpus.wid("rust")]
    both = await corpus.http.get(
        WORKERS_URL, params=[("availability", "busy"), ("availability", "unavailable")]
    )
    assert set(ids(both.json()["data"])) == {corpus.wid("rust"), corpus.wid("design")}
    assert ids(await search(corpus, WORKERS_URL, location="berlin")) == [corpus.wid("data")]


async def test_worker_facets_count_the_matches(corpus: Corpus) -> None:
    page = await search(corpus, WORKERS_URL, limit=1)
    assert facet(page, "skills") == {
        "python": 2,
        "kafka": 1,
        "rust": 1,
        "go": 1,
        "figma": 1,
        "css": 1,
        "sql": 1,
    }
    assert facet(page, "availability") == {"available": 2, "busy": 1, "unavailable": 1}
    assert page["total"] == 4


async def test_a_facet_counts_under_every_filter_but_its_own(corpus: Corpus) -> None:
    page = await search(corpus, WORKERS_URL, availability="busy", q="python")
    assert ids(page) == [corpus.wid("rust")]
    assert page["total"] == 1
    # The other values of availability stay countable (what picking them would add)...
    assert facet(page, "availability") == {"available": 2, "busy": 1}
    # ...while the skills facet counts under the availability filter.
    assert facet(page, "skills") == {"rust": 1, "go": 1}
    # With skillsMatch=all the skills narrow the facets too (a drill-down).
    page = await search(corpus, WORKERS_URL, skills="python", skillsMatch="all")
    assert facet(page, "skills") == {"python": 2, "kafka": 1, "sql": 1}
    assert facet(page, "availability") == {"available": 2}


# --- workers: sorts and pages


@pytest.mark.parametrize(
    ("sort", "order"),
    [
        ("rating", ["kafka", "rust", "data", "design"]),
        ("rate_asc", ["data", "kafka", "rust", "design"]),
        ("rate_desc", ["rust", "kafka", "data", "design"]),
        ("newest", ["data", "design", "rust", "kafka"]),
    ],
)
async def test_each_worker_sort(corpus: Corpus, sort: str, order: list[str]) -> None:
    page = await search(corpus, WORKERS_URL, sort=sort)
    assert ids(page) == [corpus.wid(name) for name in order]
    assert all(item["score"] is None for item in page["items"])


async def test_without_text_the_best_rated_come_first(corpus: Corpus) -> None:
    default = await search(corpus, WORKERS_URL)
    assert ids(default) == ids(await search(corpus, WORKERS_URL, sort="rating"))
    assert ids(await search(corpus, WORKERS_URL, sort="relevance")) == ids(default)


async def every_page(
    corpus: Corpus, url: str, as_: Account | None = None, **params: Any
) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(20):
        page = await search(corpus, url, as_, **params, **({"cursor": cursor} if cursor else {}))
        seen += ids(page)
        cursor = page["nextCursor"]
        if cursor is None:
            return seen
    raise AssertionError("more pages than documents")


@pytest.mark.parametrize(
    "params",
    [
        {"sort": "rating"},
        {"sort": "rate_asc"},
        {"sort": "newest"},
        {"q": "python example", "sort": "relevance"},
        {"q": "python", "sort": "rate_desc"},
    ],
)
async def test_paging_gives_every_worker_once_in_order(
    corpus: Corpus, params: dict[str, Any]
) -> None:
    whole = ids(await search(corpus, WORKERS_URL, limit=100, **params))
    paged = await every_page(corpus, WORKERS_URL, limit=1, **params)
    assert paged == whole
    assert len(set(paged)) == len(paged) > 1
    assert await every_page(corpus, WORKERS_URL, limit=3, **params) == whole


async def test_a_page_is_the_same_on_every_call(corpus: Corpus) -> None:
    first = await search(corpus, WORKERS_URL, limit=2, q="python")
    again = await search(corpus, WORKERS_URL, limit=2, q="python")
    assert first == again
    after = await search(corpus, WORKERS_URL, limit=2, q="python", cursor=first["nextCursor"])
    assert after == await search(
        corpus, WORKERS_URL, limit=2, q=" python ", cursor=first["nextCursor"]
    )


async def test_a_cursor_of_another_search_is_refused(corpus: Corpus) -> None:
    page = await search(corpus, WORKERS_URL, limit=1, sort="rating")
    for params in (
        {"sort": "newest"},
        {"sort": "rating", "skills": "python"},
        {"sort": "rating", "minRating": 1},
    ):
        response = await corpus.http.get(
            WORKERS_URL, params={**params, "limit": 1, "cursor": page["nextCursor"]}
        )
        assert response.status_code == 422, response.text
        assert error_fields(response) == ["cursor"]
    # A worker cursor on projects, too.
    response = await corpus.http.get(PROJECTS_URL, params={"cursor": page["nextCursor"]})
    assert error_fields(response) == ["cursor"]
    # The page size is not part of the search: a cursor serves any limit.
    await search(corpus, WORKERS_URL, limit=5, sort="rating", cursor=page["nextCursor"])


def forged(search_: queries.WorkerSearch, values: Any) -> str:
    raw = json.dumps([queries.fingerprint(search_), values])
    return base64.urlsafe_b64encode(raw.encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "!!!",
        "bm90IGpzb24",  # "not json"
        base64.urlsafe_b64encode(b'{"a": 1}').decode(),
        forged(queries.WorkerSearch(sort="rating"), ["x", 1, "id"]),
        forged(queries.WorkerSearch(sort="rating"), [4.5, 1]),
        forged(queries.WorkerSearch(sort="rating"), [4.5, 1, 7]),
        forged(queries.WorkerSearch(sort="rating"), [1e400, 1, "id"]),
        forged(queries.WorkerSearch(sort="rating"), [True, 1, "id"]),
        "x" * 400,
    ],
)
async def test_a_malformed_cursor_is_refused(corpus: Corpus, cursor: str) -> None:
    response = await corpus.http.get(WORKERS_URL, params={"cursor": cursor})
    assert response.status_code == 422, response.text
    assert names(response, "cursor")


# --- projects


async def test_projects_are_found_by_title_and_skill(corpus: Corpus) -> None:
    page = await search(corpus, PROJECTS_URL, q="python")
    # Title and skill beat a skill alone; the completed cleanup is not on the public board.
    assert ids(page) == [corpus.pid("scraper"), corpus.pid("pipeline")]
    item = page["items"][1]
    assert item == {
        "id": corpus.pid("pipeline"),
        "clientId": str(corpus.client_a.id),
        "title": "Kafka streaming pipeline",
        "description": "Move events from Kafka to PostgreSQL.",
        "skills": ["Python", "Kafka"],
        "budgetCents": 150_000,
        "currency": "USD",
        "status": "open",
        "deadline": "2030-06-01T00:00:00Z",
        "bidCount": 3,
        "createdAt": "2024-01-01T00:00:00Z",
        "score": item["score"],
    }
    description = page["items"][0]["description"]
    assert len(description) <= DESCRIPTION_PREVIEW_CHARS
    assert description.endswith("…")


async def test_who_sees_which_projects(corpus: Corpus) -> None:
    board = {corpus.pid(name) for name in ("pipeline", "landing", "scraper")}
    for caller in (None, corpus.worker):
        page = await search(corpus, PROJECTS_URL, caller, limit=100)
        assert set(ids(page)) == board
        assert facet(page, "status") == {"open": 3}
        nothing = await search(corpus, PROJECTS_URL, caller, status="completed")
        assert nothing["items"] == []
        assert nothing["total"] == 0
    own_a = await search(corpus, PROJECTS_URL, corpus.client_a, limit=100)
    assert set(ids(own_a)) == board | {corpus.pid("cli")}
    assert facet(own_a, "status") == {"open": 3, "in_progress": 1}
    own_b = await search(corpus, PROJECTS_URL, corpus.client_b, limit=100)
    assert set(ids(own_b)) == board | {corpus.pid("cleanup")}
    admin = await search(corpus, PROJECTS_URL, corpus.admin, limit=100)
    assert set(ids(admin)) == set(corpus.projects[name].id for name in corpus.projects)
    assert facet(admin, "status") == {"open": 3, "in_progress": 1, "completed": 1}


async def test_the_status_filter_narrows_what_the_caller_may_see(corpus: Corpus) -> None:
    mine = await search(corpus, PROJECTS_URL, corpus.client_a, status="in_progress")
    assert ids(mine) == [corpus.pid("cli")]
    # Disjunctive: the status facet still counts the other statuses the client may see.
    assert facet(mine, "status") == {"open": 3, "in_progress": 1}
    theirs = await search(corpus, PROJECTS_URL, corpus.client_a, status="completed")
    assert ids(theirs) == []
    done = await corpus.http.get(
        PROJECTS_URL,
        params=[("status", "completed"), ("status", "in_progress"), ("sort", "newest")],
        headers=corpus.admin.headers,
    )
    assert ids(done.json()["data"]) == [corpus.pid("cleanup"), corpus.pid("cli")]


async def test_budget_currency_and_skills_filters(corpus: Corpus) -> None:
    admin = corpus.admin
    page = await search(
        corpus, PROJECTS_URL, admin, minBudget=30_000, maxBudget=80_000, sort="budget_asc"
    )
    assert ids(page) == [corpus.pid("cleanup"), corpus.pid("cli"), corpus.pid("landing")]
    assert ids(await search(corpus, PROJECTS_URL, admin, currency="eur")) == [corpus.pid("landing")]
    all_of = await search(corpus, PROJECTS_URL, admin, skills="python,sql", skillsMatch="all")
    assert ids(all_of) == [corpus.pid("cleanup")]
    any_of = await search(corpus, PROJECTS_URL, admin, skills="rust,figma")
    assert set(ids(any_of)) == {corpus.pid("cli"), corpus.pid("landing")}
    assert facet(any_of, "skills") == {
        "python": 3,
        "kafka": 1,
        "rust": 1,
        "figma": 1,
        "css": 1,
        "sql": 1,
    }


@pytest.mark.parametrize(
    ("sort", "order"),
    [
        ("newest", ["scraper", "cleanup", "landing", "cli", "pipeline"]),
        ("budget_asc", ["scraper", "cleanup", "cli", "landing", "pipeline"]),
        ("budget_desc", ["pipeline", "landing", "cli", "cleanup", "scraper"]),
        ("fewest_bids", ["landing", "cli", "scraper", "pipeline", "cleanup"]),
    ],
)
async def test_each_project_sort(corpus: Corpus, sort: str, order: list[str]) -> None:
    page = await search(corpus, PROJECTS_URL, corpus.admin, sort=sort)
    assert ids(page) == [corpus.pid(name) for name in order]
    assert await every_page(corpus, PROJECTS_URL, corpus.admin, sort=sort, limit=2) == ids(page)


async def test_the_soonest_deadline_first_and_none_last(corpus: Corpus) -> None:
    page = await search(corpus, PROJECTS_URL, corpus.admin, sort="deadline")
    without = sorted([corpus.pid("landing"), corpus.pid("cleanup")])
    dated = [corpus.pid(name) for name in ("scraper", "cli", "pipeline")]
    assert ids(page) == dated + without
    assert await every_page(corpus, PROJECTS_URL, corpus.admin, sort="deadline", limit=1) == (
        dated + without
    )


async def test_a_cursor_is_bound_to_the_caller(corpus: Corpus) -> None:
    page = await search(corpus, PROJECTS_URL, corpus.client_a, limit=1)
    response = await corpus.http.get(
        PROJECTS_URL, params={"limit": 1, "cursor": page["nextCursor"]}
    )
    assert response.status_code == 422
    assert error_fields(response) == ["cursor"]


# --- refusals and outages


@pytest.mark.parametrize(
    ("url", "params", "field"),
    [
        (WORKERS_URL, {"limit": 0}, "limit"),
        (WORKERS_URL, {"limit": 101}, "limit"),
        (WORKERS_URL, {"sort": "cheapest"}, "sort"),
        (WORKERS_URL, {"q": "x" * 10_000}, "q"),
        (WORKERS_URL, {"q": "a\x00b"}, "q"),
        (WORKERS_URL, {"skillsMatch": "some"}, "skillsMatch"),
        (WORKERS_URL, {"skills": "x" * 51}, "skills"),
        (WORKERS_URL, {"availability": "asleep"}, "availability.0"),
        (WORKERS_URL, {"minRating": 6}, "minRating"),
        (WORKERS_URL, {"maxRating": "nan"}, "maxRating"),
        (WORKERS_URL, {"minRating": 4, "maxRating": 3}, "minRating"),
        (WORKERS_URL, {"minRate": -1}, "minRate"),
        (WORKERS_URL, {"minRate": 9_000, "maxRate": 100}, "minRate"),
        (WORKERS_URL, {"location": "y" * 201}, "location"),
        (PROJECTS_URL, {"sort": "rating"}, "sort"),
        (PROJECTS_URL, {"status": "stalled"}, "status.0"),
        (PROJECTS_URL, {"minBudget": -1}, "minBudget"),
        (PROJECTS_URL, {"maxBudget": 10**12}, "maxBudget"),
        (PROJECTS_URL, {"minBudget": 500, "maxBudget": 100}, "minBudget"),
        (PROJECTS_URL, {"currency": "dollars"}, "currency"),
        (PROJECTS_URL, {"cursor": "%%%"}, "cursor"),
    ],
)
async def test_bad_parameters_are_a_422_naming_the_field(
    corpus: Corpus, url: str, params: dict[str, Any], field: str
) -> None:
    response = await corpus.http.get(url, params=params)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == "VALIDATION_ERROR"
    assert names(response, field), body


async def test_a_bad_token_is_a_401_not_the_public_view(corpus: Corpus) -> None:
    response = await corpus.http.get(PROJECTS_URL, headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401


async def test_a_missing_index_is_an_empty_page(settings: Settings) -> None:
    fresh = settings.model_copy(update={"search_index_prefix": f"t{uuid.uuid4().hex[:8]}-"})
    async with api_of_its_own(fresh) as app, client_from(app, ip=unique_ip()) as http:
        for url in (WORKERS_URL, PROJECTS_URL):
            response = await http.get(url, params={"q": "python"})
            assert response.status_code == 200, response.text
            assert response.json()["data"] == {
                "items": [],
                "total": 0,
                "facets": response.json()["data"]["facets"],
                "nextCursor": None,
            }
            assert all(v == [] for v in response.json()["data"]["facets"].values())


@pytest.mark.parametrize("url", ["http://127.0.0.1:1", None])
async def test_search_down_is_a_503_with_retry_after(settings: Settings, url: str | None) -> None:
    down = settings.model_copy(update={"elasticsearch_url": url})
    async with api_of_its_own(down) as app, client_from(app, ip=unique_ip()) as http:
        for path in (WORKERS_URL, PROJECTS_URL):
            response = await http.get(path, params={"q": "python"})
            assert response.status_code == 503, response.text
            assert int(response.headers["Retry-After"]) > 0
            error = response.json()["error"]
            assert error["code"] == "SEARCH_UNAVAILABLE"
            assert error["details"]["retryAfter"] == int(response.headers["Retry-After"])


# --- the requests themselves (no server)


def test_text_is_a_multi_match_never_a_query_language() -> None:
    request = queries.worker_request(
        queries.WorkerSearch(sort="relevance", q='name:"x" OR *'), size=21
    )
    text = json.dumps(request)
    assert "query_string" not in text
    assert request["query"]["bool"]["must"][0]["multi_match"]["query"] == 'name:"x" OR *'
    assert {"term": {"public": True}} in request["query"]["bool"]["filter"]
    assert request["sort"][-1] == {"id": {"order": "asc"}}


@pytest.mark.parametrize(
    ("viewer", "visible"),
    [
        (queries.ProjectViewer(role="public"), [{"term": {"status": "open"}}]),
        (queries.ProjectViewer(role="admin"), []),
    ],
)
def test_project_visibility_is_a_filter_of_the_query(
    viewer: queries.ProjectViewer, visible: list[dict[str, Any]]
) -> None:
    search_ = queries.ProjectSearch(sort="newest", viewer=viewer, statuses=("completed",))
    request = queries.project_request(search_, size=21)
    assert request["query"]["bool"]["filter"] == visible
    # The status filter narrows hits, not the status facet's counts.
    assert request["post_filter"] == {"bool": {"filter": [{"terms": {"status": ["completed"]}}]}}
    assert request["aggs"]["status"]["filter"] == {"match_all": {}}


def test_every_sort_ends_with_the_id() -> None:
    for sorts in (queries.WORKER_SORTS, queries.PROJECT_SORTS):
        for keys in sorts.values():
            assert keys[-1].field == "id"
            assert keys[-1].order == "asc"


def test_a_cursor_round_trips_only_with_its_own_search() -> None:
    search_ = queries.WorkerSearch(sort="rating", skills=("python",))
    keys = queries.WORKER_SORTS["rating"]
    cursor = queries.encode_cursor(search_, [4.5, 3, "abc"])
    assert queries.decode_cursor(cursor, search_, keys) == [4.5, 3, "abc"]
    other = queries.WorkerSearch(sort="rating", skills=("rust",))
    with pytest.raises(Invalid):
        queries.decode_cursor(cursor, other, keys)
