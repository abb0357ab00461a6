"""Search indexing: the `workers` and `projects` indices (tables/search.py) kept up to date from
the `users`, `ratings` and `gigs` streams.

A projection (agents/projecting.py): an event names a worker or a project, and the entity's
document is read as it is now from PostgreSQL (tables/documents.py) and indexed under `_id` = its
id with external versioning, so a stale or repeated event never puts an older document back. The
indices are created (or migrated to a new mapping version) before the first batch is written.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Final

import asyncpg
import faust

from agents.projecting import Projection, register_projection
from agents.runtime import AgentDeps
from infrastructure.database import create_pool
from infrastructure.search import create_search_client
from streams.events import Event
from tables import documents, search, search_indices
from tables.sink import PG_UNAVAILABLE

log = logging.getLogger(__name__)

# Every event that can change what a document holds; the document is read whole either way.
WORKER_TYPES: Final = frozenset({"user.registered", "profile.updated"})
RATING_TYPES: Final = frozenset({"rating.updated"})
# A project's document has its status and live bid count; these are the events that move them.
PROJECT_TYPES: Final = frozenset(
    {
        "project.created",
        "project.updated",
        "project.status_changed",
        "project.delivered",
        "bid.submitted",
        "bid.accepted",
        "bid.withdrawn",
        # An expired bid leaves the project's bid count (tables/documents.py counts live bids).
        "bid.expired",
        "dispute.opened",
        "dispute.resolved",
    }
)


class SearchIndexer:
    """What the `search_index` agent does with a batch; one per worker process."""

    def __init__(self, deps: AgentDeps) -> None:
        self.settings = deps.settings
        self.es = create_search_client(self.settings)
        self.prefix = self.settings.search_index_prefix
        self._pool: asyncpg.Pool | None = None

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await create_pool(self.settings.database_url, min_size=1, max_size=2)
        return self._pool

    async def start(self) -> None:
        # Created, or rebuilt for a newer mapping, before anything is written to them.
        await search_indices.ensure_indices(self.es, await self.pool(), prefix=self.prefix)

    async def apply(self, events: Sequence[Event]) -> Mapping[str, str]:
        pool = await self.pool()
        events_of: dict[str, list[str]] = defaultdict(list)
        workers: list[str] = []
        projects: list[str] = []
        for event in events:
            key = event.aggregate_id
            if key not in events_of:
                (projects if event.type in PROJECT_TYPES else workers).append(key)
            events_of[key].append(str(event.event_id))
        refused: dict[str, str] = {}
        if workers:
            found = await documents.workers_by_id(pool, workers)
            # A client's account is no worker: nothing of it goes into the workers index.
            docs = [doc for doc in found.values() if doc.is_worker]
            refused |= await search.write_documents(
                self.es, search.WORKERS, docs, prefix=self.prefix
            )
        if projects:
            found_projects = await documents.projects_by_id(pool, projects)
            refused |= await search.write_documents(
                self.es, search.PROJECTS, found_projects.values(), prefix=self.prefix
            )
        return {
            event_id: f"search index refused {key}: {reason}"
            for key, reason in refused.items()
            for event_id in events_of[key]
        }


PROJECTION = Projection(
    name="search_index",
    types={"users": WORKER_TYPES, "ratings": RATING_TYPES, "gigs": PROJECT_TYPES},
    make=SearchIndexer,
    transient=(search.SearchUnavailable, *PG_UNAVAILABLE),
)


def register(app: faust.App, deps: AgentDeps) -> None:
    if deps.settings.elasticsearch_url is None:
        # `tulifo dev` always gives one (embedded noida-db when nothing answers); a deployment
        # without search says so once here rather than failing every batch.
        log.warning("TULIFO_ELASTICSEARCH_URL is not set: the search indices are not kept")
        return
    register_projection(app, deps, PROJECTION)
