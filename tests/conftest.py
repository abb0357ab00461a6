"""Fixtures that start real services: a fresh PostgreSQL database on the machine's server, the
machine's Redis, and Tansu, SecantusDB, noida-db (Elasticsearch's API) and an SMTP capture on
free ports."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from infrastructure.embedded import start_noida, start_secantus, start_tansu
from infrastructure.processes import ManagedProcess
from infrastructure.settings import Settings
from tests.databases import fresh_database
from tests.mail import MailCapture

# How long an app's startup and shutdown may take: asgi-lifespan's 5 s default was outrun while
# the machine's two cores ran browser, crash and pipeline tests side by side.
APP_LIFESPAN_S = 30.0

# A Redis database of its own, emptied at the start of a run, so tests never see a developer's keys.
REDIS_URL = os.environ.get("TULIFO_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


# --- pytest-xdist: `-n auto --dist loadgroup` in pyproject.toml's addopts -----------------------
# Each worker starts its own session fixtures (Tansu, SecantusDB, noida-db, localstripe, a fresh
# database) and tests make unique names (databases, topic prefixes, Faust app ids, e-mails, IPs,
# tmp dirs, free ports), so tests may run side by side. What the workers share is the machine's
# Redis database and its CPUs. The tests of one group run on one worker, one after the other:
XDIST_GROUPS: dict[str, str] = {
    # SIGKILL and restart tests: each runs a relay, Faust workers, a broker or a whole `tulifo dev`
    # on deadlines; two of them at once on a 2-vCPU machine starve each other's deadlines.
    "tests/streams/test_crashes.py": "process-stacks",
    "tests/streams/test_replay.py": "process-stacks",
    "tests/infrastructure/test_dev_recovery.py": "process-stacks",
    "tests/streams/test_jobs_pipeline.py": "process-stacks",
    # Two uvicorn servers, a relay and a worker it SIGKILLs and restarts, for the whole module.
    "tests/api/test_realtime.py": "process-stacks",
    # A module-scoped fixture starting processes or a corpus: once, on one worker, not on both.
    "tests/streams/test_pipeline.py": "test_pipeline",
    "tests/streams/test_read_models.py": "test_read_models",
    "tests/streams/test_matching_search.py": "test_matching_search",
    "tests/api/test_search.py": "test_search",
    # A live API, an outbox relay and a live-agent worker per module (tests/browser/live_stack.py).
    "tests/api/test_dashboard.py": "test_dashboard",
    "tests/browser/test_dashboard_browser.py": "test_dashboard_browser",
}


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto` (addopts): two workers for the suite or a directory, none (in-process) for a
    single file, where starting every service twice costs more than the second CPU saves."""
    files = {arg.split("::")[0] for arg in config.args}
    if len(files) == 1 and Path(next(iter(files))).is_file():
        return 0
    cpus = os.cpu_count() or 1
    return 2 if cpus >= 2 else 0


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        group = XDIST_GROUPS.get(item.path.relative_to(config.rootpath).as_posix())
        if group and not any(item.iter_markers("xdist_group")):
            item.add_marker(pytest.mark.xdist_group(group))


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def pytest_make_parametrize_id(config: pytest.Config, val: object, argname: str) -> str | None:
    """An id without the uuid4 for a parameter made with a fresh one at import time (plain or
    base64url, like tests/api/test_bad_input.py's cursors): every xdist worker must collect the
    same test ids, or the run stops before its first test."""
    if not isinstance(val, str):
        return None
    text = val
    if not _UUID.search(text):
        try:
            text = base64.urlsafe_b64decode(val + "=" * (-len(val) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        if not _UUID.search(text):
            return None
    return re.sub(r"[^\w:+.-]+", "_", _UUID.sub("uuid", text)).strip("_")


def pytest_sessionstart(session: pytest.Session) -> None:
    """The xdist controller empties the test Redis database once, before any worker starts."""
    if session.config.pluginmanager.has_plugin("dsession"):
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
        try:
            client.flushdb()
        except redis.ConnectionError:
            pass  # the tests that use Redis fail on their own, naming it
        finally:
            client.close()


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    """A database created for this run and dropped after it, with every migration applied."""
    async with fresh_database() as url:
        yield url


@pytest.fixture(scope="session")
async def redis_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    # Under pytest-xdist every worker shares this database: the controller empties it once
    # before they start (pytest_sessionstart above); a worker emptying it would wipe the
    # other's login counters and revoked sessions mid-test.
    if not hasattr(request.config, "workerinput"):
        client = aioredis.from_url(REDIS_URL)
        await client.flushdb()
        await client.aclose()
    yield REDIS_URL


@pytest.fixture(scope="session")
def kafka() -> Iterator[str]:
    """A Tansu broker for the whole run; yields its bootstrap address."""
    proc, bootstrap = start_tansu()
    try:
        yield bootstrap
    finally:
        # Killed, not stopped: Tansu keeps nothing on disk, and a polite stop waits ~5 s for
        # connected clients.
        proc.kill()


@pytest.fixture(scope="session")
def mongo_url() -> Iterator[str]:
    proc, url = start_secantus()
    try:
        yield url
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def elasticsearch_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """noida-db, an Elasticsearch 8 API server, with a fresh data directory for the run."""
    proc, url = start_noida(tmp_path_factory.mktemp("elasticsearch"))
    try:
        yield url
    finally:
        proc.kill()


@pytest.fixture
def smtp() -> Iterator[MailCapture]:
    capture = MailCapture()
    capture.start()
    try:
        yield capture
    finally:
        capture.stop()


@pytest.fixture(scope="session")
def settings(database_url: str, redis_url: str, mongo_url: str, elasticsearch_url: str) -> Settings:
    """Test settings. bcrypt at cost 4: cost 12 is asserted once, not paid on every login."""
    return Settings(
        env="test",
        database_url=database_url,
        redis_url=redis_url,
        kafka_bootstrap="127.0.0.1:1",  # tests that need Kafka ask for the `kafka` fixture
        mongo_url=mongo_url,
        elasticsearch_url=elasticsearch_url,
        rabbitmq_url=None,
        bcrypt_rounds=4,
        # Tests register many accounts from one address; the limit itself is tested on its own.
        register_max_per_ip=1_000_000,
        log_json=False,
        topic_prefix=f"t{uuid.uuid4().hex[:6]}",
    )


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    from api.app import create_app

    application = create_app(settings)
    async with LifespanManager(
        application, startup_timeout=APP_LIFESPAN_S, shutdown_timeout=APP_LIFESPAN_S
    ):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


# --- Stripe: localstripe for the whole session (DESIGN.md §5, §7) ------------------------------


@pytest.fixture(scope="session")
def localstripe_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A localstripe server on a free port for the run (DESIGN.md §5, §7)."""
    from tests.api.stripe_support import start_localstripe

    with start_localstripe(tmp_path_factory.mktemp("localstripe")) as url:
        yield url


@pytest.fixture(scope="session")
async def stripe_api(localstripe_url: str) -> AsyncIterator[Any]:
    """The stripe library on localstripe, playing the browser (Stripe.js) and the dashboard."""
    from tests.api.stripe_support import stripe_client

    async with stripe_client(localstripe_url) as client:
        yield client


async def wait_until(predicate, *, timeout: float = 20.0, interval: float = 0.05, what: str = ""):  # type: ignore[no-untyped-def]
    """Poll `predicate` (sync or async) until it returns a truthy value; fail at the deadline."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if loop.time() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        await asyncio.sleep(interval)


__all__ = ["ManagedProcess", "wait_until"]
