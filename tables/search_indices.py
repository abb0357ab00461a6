"""How the search indices come to be and change: created at start, migrated to a newer mapping
version, rebuilt from PostgreSQL behind their alias with no window where search is empty
(the mappings and the writes are tables/search.py). Change a mapping, bump its version: the next
start sees the alias on an index of an older version and rebuilds (`ensure_indices`).

Creating and rebuilding an alias is serialized per alias by a PostgreSQL advisory lock (processes
that share a cluster and a prefix share the database), so two processes starting at once do the
work once; the second finds the alias current.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

import asyncpg
from elasticsearch import ApiError, AsyncElasticsearch, NotFoundError

from tables.documents import all_projects, all_workers
from tables.search import INDICES, PROJECTS, WORKERS, Document, IndexSpec, bulk, unavailable

log = logging.getLogger(__name__)

# Every document of an index, a page at a time: what a rebuild fills a new index with.
_ALL_DOCUMENTS: Final[dict[str, Callable[[asyncpg.Pool], AsyncIterator[Sequence[Document]]]]] = {
    WORKERS.alias: all_workers,
    PROJECTS.alias: all_projects,
}
# A waiting starter asks for the alias's lock this often; a rebuild holds it for seconds to minutes.
LOCK_POLL_S: Final = 0.2
RebuildStep = Literal["filled", "swapped", "caught_up"]
Checkpoint = Callable[[RebuildStep, str], Awaitable[None]]


@dataclass(frozen=True)
class Rebuilt:
    """What a build did: the alias now on `index`, the indices it replaced (deleted), the
    documents written by the fill, its duration, and the documents the mapping refused."""

    alias: str
    index: str
    previous: tuple[str, ...]
    documents: int
    seconds: float
    refused: dict[str, str] = field(default_factory=dict)


async def ensure_indices(es: AsyncElasticsearch, pool: asyncpg.Pool, *, prefix: str = "") -> None:
    """Both aliases exist, each on one index of its spec's mapping version: a missing alias is
    created with a new index and filled from PostgreSQL, an alias on an older version is rebuilt
    (`rebuild`). An alias already on a newer version is left alone, with a warning: a process
    of an older release starting during a rolling deployment must not undo the migration
    (`tulifo reindex` rebuilds at the running code's version on purpose)."""
    for spec in INDICES.values():
        await ensure_index(es, pool, spec, prefix=prefix)


async def ensure_index(
    es: AsyncElasticsearch, pool: asyncpg.Pool, spec: IndexSpec, *, prefix: str = ""
) -> Rebuilt | None:
    """`ensure_indices` for one spec; returns the build it made, or None."""
    name = spec.name(prefix)
    if (await _inspect(es, name)).verdict(spec) == "current":
        return None
    async with _exclusive(pool, name):
        # Another process may have built it while this one waited for the lock.
        state = await _inspect(es, name)
        verdict = state.verdict(spec)
        if verdict == "newer":
            log.warning(
                "search index %s is on mapping version(s) %s, newer than this code's %d: "
                "left as it is",
                name,
                sorted(v for v in state.holders.values() if v is not None),
                spec.version,
            )
            return None
        if verdict == "current":
            return None
        rebuilt = await _rebuild(es, pool, spec, name, state, None)
    what = "created" if verdict == "missing" else f"migrated from {state.describe()} to"
    log.info(
        "search index %s: %s %s, %d documents in %.1fs",
        name,
        what,
        rebuilt.index,
        rebuilt.documents,
        rebuilt.seconds,
    )
    return rebuilt


async def rebuild(
    es: AsyncElasticsearch,
    pool: asyncpg.Pool,
    spec: IndexSpec,
    *,
    prefix: str = "",
    checkpoint: Checkpoint | None = None,
) -> Rebuilt:
    """Build a new concrete index for `spec` from PostgreSQL and move the alias onto it.

    1. create `<alias>-v<version>-<timestamp>` with the spec's mappings and settings;
    2. fill it with every document (`all_workers` / `all_projects`, a page at a time), refresh;
    3. swap the alias in one `update_aliases` call: removed from every index holding it (or a
       plain index of the alias's name, the seed's, removed with `remove_index`), added to the
       new one. Readers see the old index until this instant, the new one after it: search
       through the alias is never empty or missing;
    4. catch up: read every document again and write it with its external version. While the
       fill ran, the indexer kept writing changes through the alias into the OLD index; they
       are in PostgreSQL, so this pass brings them over, and external versions make it skip
       nothing newer and overwrite nothing newer (the indexer writes into the new index since
       the swap). Until it ends, the new index may lack a change made during the fill, for
       the length of this pass at most; it is never empty. Refresh;
    5. delete the previous indices (and any `<alias>-v*-*` left by a rebuild that died).

    With no alias yet, the new index is created with the alias on it (an indexer writing to a
    missing alias would make Elasticsearch create a plain index of that name) and filled: search
    is empty until then, as it was. `checkpoint(step, new_index)` is awaited after steps 2
    ("filled"), 3 ("swapped") and 4 ("caught_up"): a test's hook into those moments."""
    name = spec.name(prefix)
    async with _exclusive(pool, name):
        return await _rebuild(es, pool, spec, name, await _inspect(es, name), checkpoint)


# --- the steps ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _State:
    # The concrete indices holding the alias, each with its `_meta.mapping_version`.
    holders: dict[str, int | None]
    # The alias's name is an index of its own (the seed's, or one auto-created by a write).
    plain: bool

    def verdict(self, spec: IndexSpec) -> Literal["missing", "current", "newer", "stale"]:
        versions = list(self.holders.values())
        if self.plain:
            return "stale"
        if not versions:
            return "missing"
        if versions == [spec.version]:
            return "current"
        if all(v is not None and v > spec.version for v in versions):
            return "newer"
        return "stale"

    def describe(self) -> str:
        return ", ".join(self.holders) or "a plain index"


async def _inspect(es: AsyncElasticsearch, name: str) -> _State:
    with unavailable(f"reading the alias {name}"):
        try:
            aliases = (await es.indices.get_alias(name=name)).body
        except NotFoundError:
            aliases = {}
        if not aliases:
            return _State({}, plain=bool(await es.indices.exists(index=name)))
        mappings = (await es.indices.get_mapping(index=",".join(aliases))).body
    return _State(
        {
            index: mappings.get(index, {})
            .get("mappings", {})
            .get("_meta", {})
            .get("mapping_version")
            for index in sorted(aliases)
        },
        plain=False,
    )


async def _rebuild(
    es: AsyncElasticsearch,
    pool: asyncpg.Pool,
    spec: IndexSpec,
    name: str,
    state: _State,
    checkpoint: Checkpoint | None,
) -> Rebuilt:
    started = time.monotonic()
    first = state.verdict(spec) == "missing"
    new = await _create(es, spec, name, with_alias=first)
    written, refused = await _fill(es, pool, spec, new)
    if first:
        return Rebuilt(name, new, (), written, time.monotonic() - started, refused)
    if checkpoint:
        await checkpoint("filled", new)
    state = await _inspect(es, name)  # what holds the alias at the moment of the swap
    removals: list[dict[str, Any]] = (
        [{"remove_index": {"index": name}}]
        if state.plain
        else [{"remove": {"index": index, "alias": name}} for index in state.holders]
    )
    with unavailable(f"moving the alias {name} to {new}"):
        await es.indices.update_aliases(actions=[*removals, {"add": {"index": new, "alias": name}}])
    if checkpoint:
        await checkpoint("swapped", new)
    _, late = await _fill(es, pool, spec, new)
    if checkpoint:
        await checkpoint("caught_up", new)
    previous = sorted({*state.holders, *await _leftovers(es, name)} - {new})
    with unavailable(f"deleting the previous indices of {name}"):
        for index in previous:
            await es.indices.delete(index=index, ignore_unavailable=True)
    return Rebuilt(
        name,
        new,
        ((name,) if state.plain else ()) + tuple(previous),
        written,
        time.monotonic() - started,
        {**refused, **late},
    )


async def _create(es: AsyncElasticsearch, spec: IndexSpec, name: str, *, with_alias: bool) -> str:
    """A new concrete index of `spec`; its name is unique to the microsecond, and a clash (a
    process on another host at the same instant) takes the next instant's."""
    while True:
        index = f"{name}-v{spec.version}-{datetime.now(UTC):%Y%m%d%H%M%S%f}"
        with unavailable(f"creating the index {index}"):
            try:
                await es.indices.create(
                    index=index,
                    mappings=spec.mappings,
                    settings=spec.settings,
                    aliases={name: {}} if with_alias else None,
                )
            except ApiError as exc:
                if exc.error != "resource_already_exists_exception":
                    raise
                continue
        return index


async def _fill(
    es: AsyncElasticsearch, pool: asyncpg.Pool, spec: IndexSpec, index: str
) -> tuple[int, dict[str, str]]:
    """Every document of `spec` from PostgreSQL into `index`, then a refresh; returns how many
    were written and those refused (logged: they are what the indexer would dead-letter)."""
    written = 0
    refused: dict[str, str] = {}
    async for page in _ALL_DOCUMENTS[spec.alias](pool):
        rejected = await bulk(es, index, page, refresh=False, require_alias=False)
        written += len(page) - len(rejected)
        refused |= rejected
    with unavailable(f"refreshing {index}"):
        await es.indices.refresh(index=index)
    for doc_id, reason in refused.items():
        log.warning("search index %s refused %s: %s", index, doc_id, reason)
    return written, refused


async def _leftovers(es: AsyncElasticsearch, name: str) -> list[str]:
    """Concrete indices of this alias's naming that hold no alias: left by a rebuild that died
    between creating its index and the swap (the lock is held, so no live rebuild owns one)."""
    pattern = re.compile(rf"{re.escape(name)}-v\d+-\d+")
    with unavailable(f"listing the indices of {name}"):
        found = (
            await es.indices.get(index=f"{name}-v*", allow_no_indices=True, ignore_unavailable=True)
        ).body
    return [
        index
        for index, body in found.items()
        if pattern.fullmatch(index) and not body.get("aliases")
    ]


@asynccontextmanager
async def _exclusive(pool: asyncpg.Pool, name: str) -> AsyncIterator[None]:
    """This alias's advisory lock, held on one connection for the block. Waiting polls with
    pg_try_advisory_lock instead of blocking on a connection: a caller with a pool of two (the
    indexer's) would otherwise hold both, one waiting and one needed by the build it waits on."""
    key = f"tulifo-search-index:{name}"
    while True:
        conn = await pool.acquire()
        try:
            if await conn.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", key):
                break
        except BaseException:
            await pool.release(conn)
            raise
        await pool.release(conn)
        await asyncio.sleep(LOCK_POLL_S)
    try:
        yield
    finally:
        try:
            await conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", key)
        finally:
            await pool.release(conn)
