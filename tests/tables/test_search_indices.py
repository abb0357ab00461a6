"""The search indices on a real Elasticsearch API (noida-db): created once however many processes
start at once, written with external versions, rebuilt behind an alias that never stops
answering, migrated at start, and rebuilt by `tulifo reindex`."""

from __future__ import annotations

import asyncio
import re
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from elasticsearch import AsyncElasticsearch, NotFoundError

from infrastructure.cli import build_parser
from infrastructure.database import create_pool
from infrastructure.processes import free_port
from tables.documents import RATING_SPAN, ProjectDocument, projects_by_id
from tables.search import (
    INDICES,
    PROJECTS,
    WORKERS,
    IndexSpec,
    SearchUnavailable,
    external_version,
    write_documents,
)
from tables.search_indices import RebuildStep, ensure_indices, rebuild
from tests.conftest import wait_until
from tests.infrastructure.conftest import clean_env, tulifo_argv

REPO = Path(__file__).resolve().parents[2]


# --- fixtures and factories --------------------------------------------------------------------


@pytest.fixture
def prefix() -> str:
    """Indices of this test's own on the session's cluster."""
    return f"t{uuid.uuid4().hex[:8]}-"


@pytest.fixture
async def es(elasticsearch_url: str) -> AsyncIterator[AsyncElasticsearch]:
    client = AsyncElasticsearch(elasticsearch_url)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pg = await create_pool(database_url, min_size=1, max_size=6)
    try:
        yield pg
    finally:
        await pg.close()


async def add_worker(db: asyncpg.Connection, *, sequence: int | None = 1) -> str:
    """A public worker with a profile; `sequence` None: a legacy row no event has written."""
    user_id = uuid.uuid4()
    await db.execute(
        "INSERT INTO users (id, email, password_hash, role, name) "
        "VALUES ($1, $2, 'x', 'worker', $3)",
        user_id,
        f"w-{user_id.hex}@example.com",
        f"Worker {user_id.hex[:6]}",
    )
    await db.execute(
        "INSERT INTO user_profiles (user_id, bio, skills) VALUES ($1, 'Builds data pipelines', "
        "'{Python,Kafka}')",
        user_id,
    )
    await db.execute(
        "INSERT INTO worker_profiles (user_id, headline, hourly_rate_cents) "
        "VALUES ($1, 'Data engineer', 9000)",
        user_id,
    )
    if sequence is not None:
        await bump(db, "users", user_id, sequence)
    return str(user_id)


async def add_project(db: asyncpg.Connection, *, title: str = "Build a pipeline") -> str:
    client_id, project_id = uuid.uuid4(), uuid.uuid4()
    await db.execute(
        "INSERT INTO users (id, email, password_hash, role, name) "
        "VALUES ($1, $2, 'x', 'client', 'C')",
        client_id,
        f"c-{client_id.hex}@example.com",
    )
    await db.execute(
        "INSERT INTO projects (id, client_id, title, description, budget_cents, currency, "
        "required_skills) VALUES ($1, $2, $3, 'Kafka to PostgreSQL', 100500, 'USD', '{Python}')",
        project_id,
        client_id,
        title,
    )
    await bump(db, "gigs", project_id, 1)
    return str(project_id)


async def retitle(db: asyncpg.Connection, project_id: str, title: str) -> None:
    """What a write does: the row and its stream's sequence, in one transaction."""
    async with db.transaction():
        await db.execute(
            "UPDATE projects SET title = $2, updated_at = now() WHERE id = $1", project_id, title
        )
        await db.execute(
            "UPDATE outbox_streams SET last_sequence = last_sequence + 1 "
            "WHERE stream = 'gigs' AND key = $1",
            project_id,
        )


async def bump(db: asyncpg.Connection, stream: str, key: uuid.UUID, sequence: int) -> None:
    await db.execute(
        "INSERT INTO outbox_streams (stream, key, last_sequence) VALUES ($1, $2, $3) "
        "ON CONFLICT (stream, key) DO UPDATE SET last_sequence = EXCLUDED.last_sequence",
        stream,
        str(key),
        sequence,
    )


def project_doc(version: int, title: str, project_id: str | None = None) -> ProjectDocument:
    now = datetime(2025, 1, 2, tzinfo=UTC)
    return ProjectDocument(
        id=project_id or str(uuid.uuid4()),
        version=version,
        client_id=str(uuid.uuid4()),
        title=title,
        description="",
        skills=("python",),
        budget_cents=100_500,
        currency="USD",
        status="open",
        deadline=None,
        bid_count=0,
        created_at=now,
        updated_at=now,
    )


@dataclass(frozen=True)
class RogueProject(ProjectDocument):
    """A document with a field the strict mapping does not know."""

    def source(self) -> dict[str, Any]:
        return {**super().source(), "unmapped": "?"}


async def holders(es: AsyncElasticsearch, alias: str) -> list[str]:
    return sorted((await es.indices.get_alias(name=alias)).body)


async def concrete(es: AsyncElasticsearch, alias: str) -> list[str]:
    found = await es.indices.get(index=f"{alias}-v*", allow_no_indices=True)
    return sorted(found.body)


async def count(es: AsyncElasticsearch, index: str) -> int:
    await es.indices.refresh(index=index)
    return int((await es.count(index=index))["count"])


async def pg_count(db: asyncpg.Connection, spec: IndexSpec) -> int:
    sql = {
        "workers": "SELECT count(*) FROM users WHERE role = 'worker'",
        "projects": "SELECT count(*) FROM projects",
    }[spec.alias]
    return int(await db.fetchval(sql))


async def source_of(es: AsyncElasticsearch, index: str, doc_id: str) -> tuple[int, dict[str, Any]]:
    got = await es.get(index=index, id=doc_id)
    return int(got["_version"]), dict(got["_source"])


# --- creating the indices ----------------------------------------------------------------------


async def test_ensure_creates_each_alias_on_an_index_of_its_mapping_filled_from_postgresql(
    es: AsyncElasticsearch, pool: asyncpg.Pool, db: asyncpg.Connection, prefix: str
) -> None:
    worker_id = await add_worker(db)
    await add_project(db)

    await ensure_indices(es, pool, prefix=prefix)

    first = {}
    for spec in INDICES.values():
        alias = spec.name(prefix)
        [index] = await holders(es, alias)
        assert re.fullmatch(rf"{re.escape(alias)}-v{spec.version}-\d+", index)
        mapping = (await es.indices.get_mapping(index=alias))[index]["mappings"]
        assert mapping["_meta"] == {"mapping_version": spec.version}
        assert mapping["dynamic"] == "strict"
        assert set(mapping["properties"]) == set(spec.properties)
        # Filled at once: search is not empty until the first events arrive.
        assert await count(es, alias) == await pg_count(db, spec) > 0
        first[alias] = index
    version, source = await source_of(es, WORKERS.name(prefix), worker_id)
    assert (version, source["public"], source["skills"]) == (
        external_version(1 * RATING_SPAN),
        True,
        ["Python", "Kafka"],
    )

    await ensure_indices(es, pool, prefix=prefix)
    for alias, index in first.items():
        assert await concrete(es, alias) == [index]
        assert await holders(es, alias) == [index]


async def test_two_processes_starting_at_once_both_succeed_and_build_each_index_once(
    es: AsyncElasticsearch, database_url: str, db: asyncpg.Connection, prefix: str
) -> None:
    await add_project(db)
    pools = [await create_pool(database_url, min_size=1, max_size=2) for _ in range(2)]
    try:
        await asyncio.gather(*(ensure_indices(es, pg, prefix=prefix) for pg in pools))
    finally:
        for pg in pools:
            await pg.close()
    for spec in INDICES.values():
        alias = spec.name(prefix)
        built = await concrete(es, alias)
        assert len(built) == 1
        assert await holders(es, alias) == built


# --- writing documents -------------------------------------------------------------------------


async def test_a_newer_version_overwrites_and_an_older_or_equal_one_never_does(
    es: AsyncElasticsearch, pool: asyncpg.Pool, prefix: str
) -> None:
    await ensure_indices(es, pool, prefix=prefix)
    alias = PROJECTS.name(prefix)
    v2 = project_doc(2, "second")

    assert await write_documents(es, PROJECTS, [v2], prefix=prefix) == {}
    older = project_doc(1, "first", v2.id)
    same = project_doc(2, "second again", v2.id)
    # A conflict is the index already being ahead: not a refusal to dead-letter.
    assert await write_documents(es, PROJECTS, [older, same], prefix=prefix) == {}
    assert await source_of(es, alias, v2.id) == (external_version(2), v2.source())

    v3 = project_doc(3, "third", v2.id)
    assert await write_documents(es, PROJECTS, [v3], prefix=prefix, refresh=True) == {}
    assert await source_of(es, alias, v2.id) == (external_version(3), v3.source())


async def test_a_row_no_event_has_written_yet_is_indexed_and_its_first_event_replaces_it(
    es: AsyncElasticsearch, pool: asyncpg.Pool, prefix: str
) -> None:
    await ensure_indices(es, pool, prefix=prefix)
    alias = PROJECTS.name(prefix)
    legacy = project_doc(0, "legacy")

    assert await write_documents(es, PROJECTS, [legacy], prefix=prefix) == {}
    assert await source_of(es, alias, legacy.id) == (1, legacy.source())
    first_event = project_doc(1, "edited", legacy.id)
    assert await write_documents(es, PROJECTS, [first_event], prefix=prefix) == {}
    assert (await source_of(es, alias, legacy.id))[1]["title"] == "edited"


async def test_a_document_the_mapping_refuses_comes_back_with_its_reason_and_the_rest_is_written(
    es: AsyncElasticsearch, pool: asyncpg.Pool, prefix: str
) -> None:
    await ensure_indices(es, pool, prefix=prefix)
    good = project_doc(1, "fine")
    rogue = RogueProject(**{**project_doc(1, "rogue").__dict__})

    refused = await write_documents(es, PROJECTS, [good, rogue], prefix=prefix)

    assert list(refused) == [rogue.id]
    assert "strict_dynamic_mapping_exception" in refused[rogue.id]
    assert "unmapped" in refused[rogue.id]
    assert (await source_of(es, PROJECTS.name(prefix), good.id))[1]["title"] == "fine"


async def test_a_write_to_a_missing_alias_waits_for_it_and_creates_no_index_of_that_name(
    es: AsyncElasticsearch, prefix: str
) -> None:
    with pytest.raises(SearchUnavailable, match="index_not_found_exception"):
        await write_documents(es, PROJECTS, [project_doc(1, "early")], prefix=prefix)
    assert not await es.indices.exists(index=PROJECTS.name(prefix))


async def test_a_cluster_that_does_not_answer_is_unavailable_for_the_caller_to_retry(
    prefix: str,
) -> None:
    nowhere = AsyncElasticsearch(f"http://127.0.0.1:{free_port()}", max_retries=0)
    try:
        with pytest.raises(SearchUnavailable, match="does not answer"):
            await write_documents(nowhere, PROJECTS, [project_doc(1, "lost")], prefix=prefix)
    finally:
        await nowhere.close()


# --- rebuilding --------------------------------------------------------------------------------


@dataclass
class Watcher:
    """Searches the alias in a loop; records which index answered and how many hits it had."""

    es: AsyncElasticsearch
    alias: str
    seen: list[tuple[str, int]]
    stop: asyncio.Event

    async def run(self) -> None:
        while not self.stop.is_set():
            try:
                found = await self.es.search(index=self.alias, size=1, track_total_hits=True)
            except NotFoundError:
                self.seen.append(("404", 0))
                continue
            hits = found["hits"]
            index = hits["hits"][0]["_index"] if hits["hits"] else "none"
            self.seen.append((index, int(hits["total"]["value"])))

    async def observes_more(self) -> None:
        """Until it has searched at least once more from now."""
        before = len(self.seen)
        await wait_until(lambda: len(self.seen) > before, what="a search through the alias")


async def test_a_rebuild_keeps_search_answering_swaps_the_alias_and_catches_up_changes(
    es: AsyncElasticsearch, pool: asyncpg.Pool, db: asyncpg.Connection, prefix: str
) -> None:
    changed = await add_project(db, title="Before the rebuild")
    for _ in range(2):
        await add_project(db)
    await ensure_indices(es, pool, prefix=prefix)
    alias = PROJECTS.name(prefix)
    [old] = await holders(es, alias)
    watcher = Watcher(es, alias, [], asyncio.Event())
    watching = asyncio.create_task(watcher.run())
    steps: list[RebuildStep] = []

    async def checkpoint(step: RebuildStep, new: str) -> None:
        steps.append(step)
        await watcher.observes_more()
        if step == "filled":
            # A change committed while the fill ran, after it read this project: the indexer
            # writes it through the alias, still into the old index.
            await retitle(db, changed, "Changed during the fill")
            docs = await projects_by_id(pool, [changed])
            assert await write_documents(es, PROJECTS, docs.values(), prefix=prefix) == {}
            assert (await source_of(es, new, changed))[1]["title"] == "Before the rebuild"

    try:
        rebuilt = await rebuild(es, pool, PROJECTS, prefix=prefix, checkpoint=checkpoint)
        await watcher.observes_more()
    finally:
        watcher.stop.set()
        await watching

    assert steps == ["filled", "swapped", "caught_up"]
    assert [s for s in watcher.seen if s[0] in ("404", "none") or s[1] == 0] == []
    assert {index for index, _ in watcher.seen} == {old, rebuilt.index}
    assert await holders(es, alias) == [rebuilt.index] != [old]
    assert await concrete(es, alias) == [rebuilt.index]
    assert not await es.indices.exists(index=old)
    assert rebuilt.previous == (old,)
    expected = await pg_count(db, PROJECTS)
    assert rebuilt.documents == expected
    assert await count(es, alias) == expected
    version, source = await source_of(es, alias, changed)
    assert (version, source["title"]) == (external_version(2), "Changed during the fill")


async def test_rebuilding_workers_writes_every_worker_of_postgresql(
    es: AsyncElasticsearch, pool: asyncpg.Pool, db: asyncpg.Connection, prefix: str
) -> None:
    legacy = await add_worker(db, sequence=None)
    await ensure_indices(es, pool, prefix=prefix)

    rebuilt = await rebuild(es, pool, WORKERS, prefix=prefix)

    alias = WORKERS.name(prefix)
    assert await count(es, alias) == rebuilt.documents == await pg_count(db, WORKERS)
    assert (await source_of(es, alias, legacy))[0] == external_version(0)
    assert len(rebuilt.previous) == 1
    assert await concrete(es, alias) == [rebuilt.index]


# --- migration at start ------------------------------------------------------------------------


async def old_index(es: AsyncElasticsearch, alias: str, version: int) -> str:
    """An index of another mapping version holding the alias, with a document PostgreSQL lacks."""
    index = f"{alias}-v{version}-20240101000000000000"
    await es.indices.create(
        index=index,
        mappings={"_meta": {"mapping_version": version}, "properties": {"id": {"type": "keyword"}}},
        aliases={alias: {}},
    )
    await es.index(index=index, id="ghost", document={"id": "ghost"}, refresh=True)
    return index


async def test_an_alias_on_an_older_mapping_version_is_rebuilt_at_start(
    es: AsyncElasticsearch, pool: asyncpg.Pool, db: asyncpg.Connection, prefix: str
) -> None:
    project_id = await add_project(db)
    alias = PROJECTS.name(prefix)
    stale = await old_index(es, alias, PROJECTS.version - 1)

    await ensure_indices(es, pool, prefix=prefix)

    [index] = await holders(es, alias)
    assert index.startswith(f"{alias}-v{PROJECTS.version}-")
    assert not await es.indices.exists(index=stale)
    mapping = (await es.indices.get_mapping(index=alias))[index]["mappings"]
    assert mapping["_meta"] == {"mapping_version": PROJECTS.version}
    assert await count(es, alias) == await pg_count(db, PROJECTS)
    assert (await source_of(es, alias, project_id))[1]["id"] == project_id
    assert not await es.exists(index=alias, id="ghost")


async def test_a_plain_index_of_the_alias_name_is_replaced_by_the_alias(
    es: AsyncElasticsearch, pool: asyncpg.Pool, prefix: str
) -> None:
    """The seed's layout (or what a write to a missing alias creates on a real cluster)."""
    alias = PROJECTS.name(prefix)
    await es.indices.create(index=alias)

    await ensure_indices(es, pool, prefix=prefix)

    [index] = await holders(es, alias)
    assert index.startswith(f"{alias}-v{PROJECTS.version}-")


async def test_an_alias_on_a_newer_mapping_version_is_left_to_the_newer_release(
    es: AsyncElasticsearch, pool: asyncpg.Pool, prefix: str
) -> None:
    alias = PROJECTS.name(prefix)
    newer = await old_index(es, alias, PROJECTS.version + 1)

    await ensure_indices(es, pool, prefix=prefix)

    assert await holders(es, alias) == [newer]
    assert await es.exists(index=alias, id="ghost")


# --- tulifo reindex ----------------------------------------------------------------------------


async def tulifo(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        tulifo_argv(*args),
        env=clean_env(TULIFO_LOG_JSON="false", **env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_reindex_offers_each_index_and_all() -> None:
    [action] = [a for a in build_parser()._actions if a.dest == "command"]
    reindex = action.choices["reindex"]  # type: ignore[index]
    [index] = [a for a in reindex._actions if a.dest == "index"]
    assert set(index.choices or ()) == {*INDICES, "all"}
    assert index.default == "all"


async def test_reindex_rebuilds_the_chosen_indices_and_says_what_it_did(
    es: AsyncElasticsearch,
    db: asyncpg.Connection,
    database_url: str,
    elasticsearch_url: str,
    prefix: str,
) -> None:
    await add_project(db)
    env = {
        "TULIFO_DATABASE_URL": database_url,
        "TULIFO_ELASTICSEARCH_URL": elasticsearch_url,
        "TULIFO_SEARCH_INDEX_PREFIX": prefix,
    }
    only = await tulifo("reindex", "--index", "projects", **env)
    assert only.returncode == 0, only.stdout + only.stderr
    assert only.stdout.startswith(f"{prefix}projects: ")
    assert not await es.indices.exists_alias(name=WORKERS.name(prefix))
    [first] = await holders(es, PROJECTS.name(prefix))

    done = await tulifo("reindex", **env)

    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        spec.name(prefix) for spec in INDICES.values()
    ]
    assert f"replacing {first}" in lines[1]
    for spec in INDICES.values():
        alias = spec.name(prefix)
        [index] = await holders(es, alias)
        assert index != first
        assert await count(es, alias) == await pg_count(db, spec)


async def test_reindex_without_a_reachable_elasticsearch_fails_and_says_why(
    database_url: str,
) -> None:
    port = free_port()
    unreachable = await tulifo(
        "reindex",
        TULIFO_DATABASE_URL=database_url,
        TULIFO_ELASTICSEARCH_URL=f"http://127.0.0.1:{port}",
    )
    assert unreachable.returncode == 1
    assert f"tulifo reindex: Elasticsearch at http://127.0.0.1:{port} does not answer" in (
        unreachable.stderr
    )

    unset = await tulifo("reindex", TULIFO_DATABASE_URL=database_url)
    assert unset.returncode == 1
    assert "TULIFO_ELASTICSEARCH_URL is not set" in unset.stderr


async def test_replay_asked_to_reindex_without_elasticsearch_refuses_before_replaying(
    database_url: str,
) -> None:
    refused = await tulifo("replay", "--reindex", TULIFO_DATABASE_URL=database_url)
    assert refused.returncode == 1
    assert "tulifo replay: --reindex needs TULIFO_ELASTICSEARCH_URL" in refused.stderr
