"""Matching and search fed by the stream, end to end: the API writes, the relay publishes, a real
worker (a subprocess running the ratings, matching and search agents) ranks and indexes, and the
API answers from what the agents kept — PostgreSQL's `analytics.match_scores` and an
Elasticsearch-API server (noida-db). Then the worker is SIGKILLed mid-stream and what survived is
compared with a recomputation from the write side."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from elasticsearch import AsyncElasticsearch

from bridges.relay import OutboxRelay
from infrastructure.settings import Settings
from tables import documents, matching, search
from tests.api.conftest import Account, bearer, register
from tests.api.gigs import data, make_admin
from tests.bridges.support import append_events
from tests.conftest import APP_LIFESPAN_S, wait_until
from tests.databases import fresh_database
from tests.streams.gig_factories import review
from tests.streams.workers import Worker, pipeline_settings, spawn_worker

# Joining the group and the first assignment take seconds on Tansu; later changes come fast.
FIRST_DEADLINE_S = 60.0
DEADLINE_S = 30.0
AGENTS = "ratings,matching,search"


@dataclass
class Stack:
    settings: Settings
    http: httpx.AsyncClient
    app: Any
    directory: Path
    worker: Worker
    es: AsyncElasticsearch

    def restart_worker(self) -> None:
        self.worker = spawn_worker(self.settings, self.directory, "worker-2", agents=AGENTS)


@pytest.fixture(scope="module")
async def stack(
    kafka: str,
    mongo_url: str,
    redis_url: str,
    elasticsearch_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    from api.app import create_app

    directory = tmp_path_factory.mktemp("matching")
    async with fresh_database() as database_url:
        settings = pipeline_settings(
            database_url=database_url,
            kafka=kafka,
            mongo_url=mongo_url,
            prefix="m",
            redis_url=redis_url,
            elasticsearch_url=elasticsearch_url,
            search_index_prefix=f"m{uuid.uuid4().hex[:8]}-",
            bcrypt_rounds=4,
            # The session's tests share one Redis, and with it the per-address counters.
            register_max_per_ip=1_000_000,
            login_max_per_ip=1_000_000,
            match_top_k=10,
        )
        worker = spawn_worker(settings, directory, agents=AGENTS)
        stack: Stack | None = None
        relay = OutboxRelay(settings)
        relay_task = asyncio.create_task(relay.run())
        app = create_app(settings)
        es = AsyncElasticsearch(elasticsearch_url)
        try:
            async with (
                LifespanManager(
                    app, startup_timeout=APP_LIFESPAN_S, shutdown_timeout=APP_LIFESPAN_S
                ),
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://testserver"
                ) as http,
            ):
                stack = Stack(settings, http, app, directory, worker, es)
                yield stack
        finally:
            await es.close()
            await relay.stop()
            await relay_task
            # The worker running now: a test may have killed the first and started another.
            (stack.worker if stack is not None else worker).process.stop()


async def worker_with(stack: Stack, **profile: Any) -> Account:
    account = await register(stack.http, role="worker", email=f"w-{uuid.uuid4().hex[:10]}@ex.com")
    response = await stack.http.patch(
        "/api/users/me/profile", json=profile, headers=bearer(account.access_token)
    )
    data(response)
    return account


async def project(stack: Stack, client: Account, **body: Any) -> str:
    values = {"budget": 1500, "currency": "USD", "description": "", **body}
    response = await stack.http.post(
        "/api/projects", json=values, headers=bearer(client.access_token)
    )
    return str(data(response, 201)["id"])


async def ranking(stack: Stack, who: Account, project_id: str, **params: Any) -> httpx.Response:
    return await stack.http.get(
        "/api/matching/match",
        params={"projectId": project_id, **params},
        headers=bearer(who.access_token),
    )


async def ranked_ids(stack: Stack, who: Account, project_id: str) -> list[str]:
    body = data(await ranking(stack, who, project_id))
    return [item["worker"]["id"] for item in body["items"]]


async def until_ranked(
    stack: Stack, who: Account, project_id: str, check: Any, *, timeout: float = DEADLINE_S
) -> list[str]:
    async def ready() -> list[str] | None:
        if not stack.worker.process.alive:
            raise AssertionError(f"the worker died; its log:\n{stack.worker.log()}")
        ids = await ranked_ids(stack, who, project_id)
        return ids if check(ids) else None

    try:
        result: list[str] = await wait_until(ready, timeout=timeout, what="the ranking")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; worker log:\n{stack.worker.log()}") from None
    return result


async def test_a_client_sees_ranked_workers_with_the_parts_of_each_score(stack: Stack) -> None:
    engineer = await worker_with(
        stack,
        skills=["Python", "Airflow", "Spark"],
        headline="Data engineer",
        bio="I build batch and streaming data pipelines in Python with Airflow.",
    )
    webdev = await worker_with(
        stack, skills=["Python", "Django"], bio="Web applications with Django and PostgreSQL."
    )
    designer = await worker_with(
        stack, skills=["Figma", "Illustration"], bio="Brand identities and illustration."
    )
    client = await register(stack.http, role="client", email=f"c-{uuid.uuid4().hex[:10]}@ex.com")
    project_id = await project(
        stack,
        client,
        title="Nightly data pipeline",
        description="Move our sales data nightly with an Airflow pipeline written in Python.",
        skills=["Python", "Airflow"],
    )

    ids = await until_ranked(
        stack, client, project_id, lambda ids: len(ids) >= 2, timeout=FIRST_DEADLINE_S
    )
    assert ids[:2] == [str(engineer.id), str(webdev.id)]
    assert str(designer.id) not in ids  # nothing in common: rating alone ranks nobody
    body = data(await ranking(stack, client, project_id))
    weights = body["weights"]
    assert weights == {"text": 0.7, "rating": 0.2, "availability": 0.1}
    assert body["projectStatus"] == "open"
    assert body["ranked"] == len(body["items"])
    first = body["items"][0]
    assert first["rank"] == 1
    parts = first["parts"]
    assert 0 < parts["text"] <= 1
    assert parts["rating"] == pytest.approx((3.5 - 1) / 4)  # no reviews yet: neutral
    assert parts["availability"] == 1.0
    assert first["score"] == pytest.approx(
        sum(weights[name] * parts[name] for name in ("text", "rating", "availability"))
    )
    assert first["worker"]["skills"] == ["Python", "Airflow", "Spark"]
    assert [item["score"] for item in body["items"]] == sorted(
        (item["score"] for item in body["items"]), reverse=True
    )

    # Pages: one at a time, the same workers in the same order.
    paged: list[str] = []
    cursor = None
    while True:
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = data(await ranking(stack, client, project_id, **params))
        paged += [item["worker"]["id"] for item in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert paged == ids

    # Only the project's client and admins see it; anyone else as if it did not exist.
    other = await register(stack.http, role="client", email=f"o-{uuid.uuid4().hex[:10]}@ex.com")
    for outsider in (other, engineer):
        assert (await ranking(stack, outsider, project_id)).status_code == 404
    admin = await make_admin(stack.app, stack.http)
    assert (await ranking(stack, admin, project_id)).status_code == 200
    assert (await ranking(stack, client, str(uuid.uuid4()))).status_code == 404
    bad = await ranking(stack, client, project_id, cursor="not-a-cursor")
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["field"] == "cursor"

    # A profile change moves the ranking: the designer retrains as a data engineer.
    response = await stack.http.patch(
        "/api/users/me/profile",
        json={"skills": ["Python", "Airflow"], "bio": "Airflow pipelines for nightly data."},
        headers=bearer(designer.access_token),
    )
    data(response)
    ids = await until_ranked(stack, client, project_id, lambda ids: str(designer.id) in ids)
    assert ids.index(str(designer.id)) < ids.index(str(webdev.id))

    # ...and a private profile leaves it.
    response = await stack.http.patch(
        "/api/users/me/settings",
        json={"privacy": {"profileVisibility": "private"}},
        headers=bearer(designer.access_token),
    )
    data(response)
    await until_ranked(stack, client, project_id, lambda ids: str(designer.id) not in ids)


async def test_a_rating_change_moves_the_ranking(stack: Stack) -> None:
    skill = f"Cobol{uuid.uuid4().hex[:6]}"
    profile = {"skills": [skill, "Mainframe"], "bio": f"{skill} on mainframes."}
    first = await worker_with(stack, **profile)
    second = await worker_with(stack, **profile)
    pair = {str(first.id), str(second.id)}
    client = await register(stack.http, role="client", email=f"c-{uuid.uuid4().hex[:10]}@ex.com")
    project_id = await project(
        stack, client, title=f"{skill} maintenance", description=skill, skills=[skill]
    )
    ids = await until_ranked(
        stack, client, project_id, lambda ids: set(ids[:2]) == pair, timeout=FIRST_DEADLINE_S
    )
    # Equal in everything: the tie goes to the smaller id.
    assert ids[:2] == sorted(pair)
    behind = ids[1]

    await append_events(
        stack.settings.database_url, [review(reviewee_id=uuid.UUID(behind), rating=5)]
    )
    await until_ranked(stack, client, project_id, lambda ids: ids[0] == behind)
    body = data(await ranking(stack, client, project_id))
    top, runner_up = body["items"][:2]
    assert runner_up["worker"]["id"] != behind
    assert top["parts"]["text"] == pytest.approx(runner_up["parts"]["text"])
    assert top["parts"]["rating"] > runner_up["parts"]["rating"]
    assert top["worker"]["rating"] == pytest.approx((5 * 3.5 + 5) / 6, abs=1e-4)


async def test_search_finds_workers_and_projects_the_stream_indexed(stack: Stack) -> None:
    tag = uuid.uuid4().hex[:8]
    skill = f"Quantum{tag}"
    expert = await worker_with(
        stack, skills=[skill, "Python"], bio="Quantum circuits and error correction."
    )
    await worker_with(stack, skills=[skill], bio="Some quantum experiments.")
    client = await register(stack.http, role="client", email=f"c-{uuid.uuid4().hex[:10]}@ex.com")
    project_id = await project(
        stack,
        client,
        title=f"Quantum error correction {tag}",
        description="Surface codes.",
        skills=[skill],
    )

    async def found() -> dict[str, Any] | None:
        # skillsMatch=all narrows the query itself, so the skill facet counts only these two.
        response = await stack.http.get(
            "/api/search/workers", params={"skills": skill.lower(), "skillsMatch": "all"}
        )
        body = data(response)
        return body if body["total"] == 2 else None

    body = await wait_until(found, timeout=FIRST_DEADLINE_S, what="both workers indexed")
    facets = {bucket["value"]: bucket["count"] for bucket in body["facets"]["skills"]}
    assert facets[skill.lower()] == 2
    assert facets["python"] == 1

    response = await stack.http.get("/api/search/workers", params={"q": "error correction"})
    assert data(response)["items"][0]["id"] == str(expert.id)

    async def project_found() -> bool:
        response = await stack.http.get("/api/search/projects", params={"q": tag})
        return [item["id"] for item in data(response)["items"]] == [project_id]

    await wait_until(project_found, timeout=DEADLINE_S, what="the project indexed")


# --- SIGKILL mid-stream: what survived against the write side ----------------------------------


async def expected_rankings(database_url: str, top_k: int) -> dict[str, list[tuple[str, int]]]:
    """Every open project's ranking, computed from scratch from the write side."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    assert pool is not None
    try:
        workers = [doc async for page in documents.all_workers(pool) for doc in page if doc.public]
        projects = [
            doc async for page in documents.all_projects(pool, open_only=True) for doc in page
        ]
    finally:
        await pool.close()
    from agents.matching import project_input, worker_input

    matcher = matching.Matcher(top_k=top_k)
    matcher.load(map(worker_input, workers), map(project_input, projects))
    return {
        doc.id: [(m.worker_id, m.rank) for m in matcher.ranking(doc.id) or ()] for doc in projects
    }


async def stored_rankings(database_url: str) -> dict[str, list[tuple[str, int]]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            """SELECT project_id, worker_id, rank FROM analytics.match_scores
                ORDER BY project_id, rank"""
        )
    finally:
        await conn.close()
    stored: dict[str, list[tuple[str, int]]] = {}
    for row in rows:
        stored.setdefault(str(row["project_id"]), []).append((str(row["worker_id"]), row["rank"]))
    return stored


async def test_a_sigkilled_worker_leaves_rankings_and_indices_as_the_write_side_says(
    stack: Stack,
) -> None:
    skills = ["Rust", "Go", "Kotlin", "Swift", "Haskell", "Elixir"]
    people = [
        await worker_with(stack, skills=[skills[i % 6], skills[(i + 1) % 6]], bio=f"dev {i}")
        for i in range(12)
    ]
    client = await register(stack.http, role="client", email=f"c-{uuid.uuid4().hex[:10]}@ex.com")
    projects = [
        await project(stack, client, title=f"{skill} service", description="...", skills=[skill])
        for skill in skills
    ]
    await until_ranked(
        stack, client, projects[-1], lambda ids: len(ids) >= 2, timeout=FIRST_DEADLINE_S
    )

    async def change(i: int) -> None:
        person = people[i % len(people)]
        response = await stack.http.patch(
            "/api/users/me/profile",
            json={"skills": [skills[(i + 2) % 6], skills[(i + 3) % 6]], "bio": f"now {i}"},
            headers=bearer(person.access_token),
        )
        data(response)

    for i in range(12):
        await change(i)
    stack.worker.process.kill()  # SIGKILL, mid-stream: most of those are not folded yet
    for i in range(12, 24):
        await change(i)
    stack.restart_worker()

    database_url = stack.settings.database_url
    expected = await expected_rankings(database_url, stack.settings.match_top_k)

    async def converged() -> bool:
        if not stack.worker.process.alive:
            raise AssertionError(f"the restarted worker died:\n{stack.worker.log()}")
        return await stored_rankings(database_url) == {k: v for k, v in expected.items() if v}

    try:
        await wait_until(converged, timeout=FIRST_DEADLINE_S, what="rankings as recomputed")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; worker log:\n{stack.worker.log()}") from None

    # Every worker's search document is the write side's, at the write side's version.
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    assert pool is not None
    try:
        truth = await documents.workers_by_id(pool, [p.id for p in people])
    finally:
        await pool.close()
    index = search.WORKERS.name(stack.settings.search_index_prefix)

    off: list[str] = []

    async def indexed() -> bool:
        off.clear()
        for worker_id, doc in truth.items():
            got = await stack.es.options(ignore_status=404).get(index=index, id=worker_id)
            if not got.get("found") or got["_source"] != doc.source():
                off.append(f"{worker_id}: indexed {got.get('_source')}, written {doc.source()}")
        return not off

    try:
        # The second round of changes moves no ranking (the same skills as the first), so the
        # rankings above may already hold before the restarted worker has even rejoined the
        # group (~20 s with the dead member's session): give it the first deadline.
        await wait_until(indexed, timeout=FIRST_DEADLINE_S, what="search documents as written")
    except AssertionError as exc:
        found = "\n".join(off[:3])
        log = stack.worker.log()
        raise AssertionError(f"{exc}; {len(off)} off, e.g.\n{found}\nworker log:\n{log}") from None
