"""`search`: GET /api/search/workers?q=<word>&skills=<skill> through the production server, and
the same Elasticsearch request sent straight to the engine, at one bounded rate.

The engine here is noida-db (DESIGN.md §5, §7), started with a fresh data directory: it speaks
Elasticsearch 8's REST API but scans every document per query and answers one query at a time
(~0.4 s at 10k documents), so it is never a performance reference. What the row can say is the
API's own cost on top of whatever engine answers: the ratio of the two, measured against the same
indices with the same queries in the same run. No §6 target.

Set-up (not measured): a database of its own, `tulifo_bench_<id>_search` (the match-api database
holds 10,000 workers, too many for a scanning engine), with 1,000 workers and 500 open projects
COPYed in (bench/marketplace.py); `tables.search_indices.ensure_indices` creates
both indices under the run's prefix and fills them from PostgreSQL, the path a first start takes.
"""

from __future__ import annotations

import random
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from typing import Any

from elasticsearch import AsyncElasticsearch

from api.search import queries
from api.search.router import skill_keys
from bench.api_write import REQUEST_TIMEOUT_S, api_server
from bench.cpu import CpuWindow
from bench.environment import PG_ADMIN_URL, Environment
from bench.load import LoadResult, open_loop
from bench.marketplace import get_session, getter, seed_marketplace
from bench.report import Row, row
from infrastructure.database import create_pool
from infrastructure.embedded import start_noida
from infrastructure.migrations import scratch_database
from tables.matching_synthetic import SKILLS
from tables.search import WORKERS
from tables.search_indices import ensure_indices

# Words of the synthetic bios (tables/matching_synthetic.py), searched with one of the most
# common skills: every search has hits to score, sort and facet.
WORDS = ("experienced", "reliable", "scalable", "dashboards", "pipelines", "secure", "remote")
COMMON_SKILLS = SKILLS[:20]


@dataclass(frozen=True)
class Plan:
    # noida-db answers one query at a time, each a scan of every document: ~0.16 ms per worker
    # document here (0.3-0.4 s at 2,000 with this request's facets and fuzzy text), so 1,000
    # workers at 2 queries/s keep it about a third busy, and the windows measure answers, not
    # the engine's queue (at 2,000 and 4/s the queue grew for the whole window).
    rate: float
    duration_s: float
    warmup_s: float
    workers: int = 1_000
    projects: int = 500
    limit: int = 10


@dataclass(frozen=True)
class SearchResult:
    plan: Plan
    documents: int
    index_s: float
    api: LoadResult
    direct: LoadResult
    # The API server's CPU over its window: its own cost per search, which the engine's spread
    # (tens of ms between runs of the same query) hides in the latencies.
    cpu: CpuWindow

    def rows(self) -> list[Row]:
        api, direct, cpu = self.api, self.direct, self.cpu
        server_ms = cpu.server_s / max(api.ok, 1) * 1000
        engine = "noida-db: scans every document, not a performance reference (DESIGN.md §7)"
        extra = api.latency_ms(50) - direct.latency_ms(50)
        return [
            row(
                "search p50",
                api.latency_ms(50),
                "ms",
                note=f"GET /api/search/workers?q&skills&limit={self.plan.limit}; {engine}",
            ),
            row(
                "search p99",
                api.latency_ms(99),
                "ms",
                note=f"{_outcome(api)} at {self.plan.rate:g} req/s",
            ),
            row(
                "search direct p50",
                direct.latency_ms(50),
                "ms",
                note="the same request straight to noida-db (elasticsearch client); "
                f"{direct.latency_ms(50) / self.documents:.2f} ms per worker document",
            ),
            row(
                "search direct p99",
                direct.latency_ms(99),
                "ms",
                note=f"{_outcome(direct)}; {self.documents:,} worker documents indexed"
                f" by ensure_indices in {self.index_s:.1f} s",
            ),
            row(
                "search API / direct p50",
                api.latency_ms(50) / direct.latency_ms(50),
                "x",
                note=f"the API's own cost: {server_ms:.1f} ms of server CPU per search; p50"
                f" difference {extra:+.1f} ms; others: {cpu.busiest_others()}",
            ),
        ]


def _outcome(load: LoadResult) -> str:
    errors = f", errors {dict(load.errors)}" if load.error_count else ""
    return f"{load.ok:,}/{load.scheduled:,} ok{errors}"


async def measure(env: Environment, plan: Plan) -> SearchResult:
    prefix = f"bench{env.run_id}-"
    async with AsyncExitStack() as stack:
        database_url = await stack.enter_async_context(
            scratch_database(PG_ADMIN_URL, f"tulifo_bench_{env.run_id}_search")
        )
        workdir = env.workdir / "search"
        workdir.mkdir(parents=True, exist_ok=True)
        noida, es_url = start_noida(workdir / "noida-data", log_path=workdir / "noida.log")
        stack.callback(noida.stop)
        await seed_marketplace(database_url, workers=plan.workers, projects=plan.projects, seed=13)
        es = AsyncElasticsearch(es_url, request_timeout=REQUEST_TIMEOUT_S)
        stack.push_async_callback(es.close)
        pool = await create_pool(database_url, min_size=1, max_size=2)
        stack.push_async_callback(pool.close)
        started = time.perf_counter()
        await ensure_indices(es, pool, prefix=prefix)
        index_s = time.perf_counter() - started
        index = WORKERS.name(prefix)
        documents = int((await es.count(index=index))["count"])
        rng = random.Random(17)
        searches = [(rng.choice(WORDS), rng.choice(COMMON_SKILLS)) for _ in range(1_000)]
        requests = [_request(q, skill, plan.limit) for q, skill in searches]
        paths = [
            f"/api/search/workers?q={q}&skills={skill}&limit={plan.limit}" for q, skill in searches
        ]

        async def direct(i: int) -> bool:
            await es.search(index=index, **requests[i % len(requests)])
            return True

        search_env = replace(env, database_url=database_url, workdir=workdir)
        async with (
            # The production server as api-write runs it, with the engine and the run's prefix.
            api_server(
                search_env,
                {"TULIFO_ELASTICSEARCH_URL": es_url, "TULIFO_SEARCH_INDEX_PREFIX": prefix},
            ) as (base_url, server),
            get_session(base_url) as session,
        ):
            await _check_same_hits(session, es, index, paths[0], requests[0])
            api = getter(session, lambda i: paths[i % len(paths)], {})
            drain = REQUEST_TIMEOUT_S + 1
            # One window after the other: the engine answers one query at a time.
            for send in (direct, api):
                await open_loop(
                    send, rate=plan.rate, duration_s=plan.warmup_s, drain_timeout_s=drain
                )
            direct_load = await open_loop(
                direct, rate=plan.rate, duration_s=plan.duration_s, drain_timeout_s=drain
            )
            cpu = CpuWindow(server.popen.pid)
            cpu.start()
            api_load = await open_loop(
                api, rate=plan.rate, duration_s=plan.duration_s, drain_timeout_s=drain
            )
            cpu.stop()
    return SearchResult(plan, documents, index_s, api_load, direct_load, cpu)


def _request(q: str, skill: str, limit: int) -> dict[str, Any]:
    """What the API sends for `?q=<q>&skills=<skill>&limit=<limit>` (api/search/router.py)."""
    search = queries.WorkerSearch(
        sort=queries.worker_sort(None, q), q=q, skills=skill_keys([skill])
    )
    return queries.worker_request(search, size=limit + 1)


async def _check_same_hits(
    session: Any, es: AsyncElasticsearch, index: str, path: str, request: dict[str, Any]
) -> None:
    """Before any load: the API and the direct request find the same, and find something."""
    async with session.get(path) as response:
        body = await response.json()
    direct = (await es.search(index=index, **request)).body
    api_total = (body.get("data") or {}).get("total")
    direct_total = direct["hits"]["total"]["value"]
    if response.status != 200 or api_total != direct_total or not direct_total:
        raise RuntimeError(
            f"{path}: {response.status}, total {api_total} vs {direct_total} direct: "
            f"{str(body)[:300]}"
        )
