"""`tulifo reindex`: rebuild the search indices from PostgreSQL (tables/search.py `rebuild`).

Search documents are read from the write side (tables/documents.py), not folded from the event
topics, so a rebuild needs PostgreSQL and Elasticsearch and nothing else: each chosen alias gets
a new concrete index at the running code's mapping version, filled, swapped in atomically, caught
up and its previous index deleted, while search keeps answering from the old one. An alias that
does not exist yet is created as `ensure_indices` would (the first start's build).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import asyncpg
from elasticsearch import ApiError, TransportError

from infrastructure.database import create_pool
from infrastructure.local.probes import redact
from infrastructure.search import SearchNotConfigured, create_search_client
from infrastructure.settings import Settings
from tables.search import INDICES, SearchUnavailable
from tables.search_indices import Rebuilt, rebuild

# Enough for the advisory lock's connection and the pages a fill reads.
POOL_SIZE = 3


class ReindexRefused(Exception):
    """Search is not configured, or PostgreSQL or Elasticsearch cannot be reached."""


async def reindex(
    settings: Settings,
    *,
    aliases: Sequence[str] = tuple(INDICES),
    progress: Callable[[str], None] | None = None,
) -> list[Rebuilt]:
    """Rebuild each of `aliases` (the seed's names: `workers`, `projects`) in turn under
    TULIFO_SEARCH_INDEX_PREFIX; `progress` gets a summary line after each."""
    try:
        es = create_search_client(settings)
    except SearchNotConfigured as exc:
        raise ReindexRefused(str(exc)) from exc
    try:
        try:
            await es.info()
        except (TransportError, ApiError) as exc:
            raise ReindexRefused(
                f"Elasticsearch at {redact(str(settings.elasticsearch_url))} does not answer: {exc}"
            ) from exc
        try:
            pool = await create_pool(settings.database_url, min_size=1, max_size=POOL_SIZE)
        except (OSError, asyncpg.PostgresError) as exc:
            raise ReindexRefused(
                f"PostgreSQL at {redact(settings.database_url)} does not answer: {exc}"
            ) from exc
        try:
            done = []
            for alias in aliases:
                try:
                    rebuilt = await rebuild(
                        es, pool, INDICES[alias], prefix=settings.search_index_prefix
                    )
                except SearchUnavailable as exc:
                    raise ReindexRefused(f"{alias}: {exc}") from exc
                done.append(rebuilt)
                if progress:
                    progress(summary(rebuilt))
            return done
        finally:
            await pool.close()
    finally:
        await es.close()


def summary(rebuilt: Rebuilt) -> str:
    previous = ", ".join(rebuilt.previous) or "no previous index"
    refused = f"; {len(rebuilt.refused)} refused (see the log)" if rebuilt.refused else ""
    return (
        f"{rebuilt.alias}: {rebuilt.documents} documents into {rebuilt.index} in "
        f"{rebuilt.seconds:.1f}s, replacing {previous}{refused}"
    )
