"""The launcher uses the machine's servers when they answer and starts stand-ins when they do not,
and whatever it started is gone after it stops."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import smtplib
import time
from email.message import EmailMessage
from pathlib import Path

import asyncpg
import httpx
import psutil
import pymongo
import pytest
import redis

from infrastructure.local import LocalServiceError, LocalServices, Mode, Refused
from infrastructure.processes import free_port, port_open
from infrastructure.settings import Settings
from tests.infrastructure.conftest import MACHINE_RABBITMQ_URL, MACHINE_REDIS_URL, gone


def closed(scheme: str = "") -> str:
    """An address where nothing listens."""
    return f"{scheme}127.0.0.1:{free_port()}"


def settings(**overrides: object) -> Settings:
    """Everything pointed at closed ports unless a test says otherwise."""
    values: dict[str, object] = {
        "env": "test",
        "log_json": False,
        "database_url": f"postgresql://postgres@{closed()}/tulifo_dev",
        "redis_url": f"redis://{closed()}/0",
        "kafka_bootstrap": closed(),
        "mongo_url": f"mongodb://{closed()}",
        "rabbitmq_url": f"amqp://guest:guest@{closed()}/",
        "elasticsearch_url": None,
        "smtp_host": "127.0.0.1",
        "smtp_port": free_port(),
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def process_tree(services: LocalServices) -> list[int]:
    """Every process the launcher started, and theirs (PostgreSQL's backends, say)."""
    pids = []
    for proc in services.processes:
        pids.append(proc.popen.pid)
        pids += [child.pid for child in psutil.Process(proc.popen.pid).children(recursive=True)]
    return pids


async def _query(url: str, sql: str) -> object:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def query(url: str, sql: str) -> object:
    return asyncio.run(_query(url, sql))


def elasticsearch_version(url: str) -> str:
    """The version an Elasticsearch-API server at `url` says it is."""
    response = httpx.get(url, trust_env=False, timeout=10)
    response.raise_for_status()
    number: str = response.json()["version"]["number"]
    return number


def wait_for(predicate: object, *, timeout: float = 20.0, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def test_uses_the_machines_postgres_redis_and_rabbitmq_and_a_set_elasticsearch_that_answer(
    tmp_path: Path, fresh_database_url: str, elasticsearch_url: str
) -> None:
    config = settings(
        database_url=fresh_database_url,
        redis_url=MACHINE_REDIS_URL,
        rabbitmq_url=MACHINE_RABBITMQ_URL,
        elasticsearch_url=elasticsearch_url,
    )
    with LocalServices(config, state_dir=tmp_path / "state", echo_mail=False) as services:
        modes = {status.name: status.mode for status in services.statuses}
        assert modes == {
            "postgres": Mode.CONFIGURED,
            "redis": Mode.CONFIGURED,
            "kafka": Mode.EMBEDDED,
            "mongodb": Mode.EMBEDDED,
            "smtp": Mode.EMBEDDED,
            "stripe": Mode.EMBEDDED,
            "rabbitmq": Mode.CONFIGURED,
            "search": Mode.CONFIGURED,
        }
        env = services.env
        assert env["TULIFO_DATABASE_URL"] == fresh_database_url
        assert env["TULIFO_REDIS_URL"] == MACHINE_REDIS_URL
        assert env["TULIFO_RABBITMQ_URL"] == MACHINE_RABBITMQ_URL
        assert env["TULIFO_ELASTICSEARCH_URL"] == elasticsearch_url
        # The database named in the URL did not exist; the launcher created it.
        assert (
            query(fresh_database_url, "SELECT current_database()")
            == (fresh_database_url.rsplit("/", 1)[1])
        )
        host, port = env["TULIFO_KAFKA_BOOTSTRAP"].split(":")
        assert port_open(host, int(port))
        mongo: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
            env["TULIFO_MONGO_URL"], serverSelectionTimeoutMS=5000
        )
        assert mongo.admin.command("ping")["ok"] == 1
        mongo.close()
        pids = process_tree(services)
        # tansu, secantus, the mail catcher, localstripe: no noida-db
        assert len(services.processes) == 4
        assert "search" not in services.embedded
    assert gone(pids) == []
    assert services.processes == []


def test_starts_embedded_postgres_redis_and_search_when_nothing_answers_and_rabbitmq_is_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    silent_elasticsearch = f"http://{closed()}"
    config = settings(elasticsearch_url=silent_elasticsearch)
    with LocalServices(config, state_dir=tmp_path / "state", echo_mail=False) as services:
        assert services.status("postgres").mode is Mode.EMBEDDED
        assert services.status("redis").mode is Mode.EMBEDDED
        assert services.status("rabbitmq").mode is Mode.OFF
        assert services.status("search").mode is Mode.EMBEDDED
        env = services.env
        assert env["TULIFO_ELASTICSEARCH_URL"] != silent_elasticsearch
        assert elasticsearch_version(env["TULIFO_ELASTICSEARCH_URL"]).startswith("8.")
        database_url = env["TULIFO_DATABASE_URL"]
        assert query(database_url, "SELECT current_database()") == "tulifo_dev"
        assert str(query(database_url, "SHOW server_version")).startswith("16.")
        client = redis.Redis.from_url(env["TULIFO_REDIS_URL"])
        client.set("launcher", "works")
        assert client.get("launcher") == b"works"
        client.close()
        # Children read "off" from an empty variable.
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        child_view = Settings()
        assert child_view.rabbitmq_url is None
        assert child_view.elasticsearch_url == env["TULIFO_ELASTICSEARCH_URL"]
        pids = process_tree(services)
        assert len(pids) > len(services.processes)  # postgres has its own children
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("rabbitmq" in m and "OFF" in m and "NOT" in m for m in warnings), warnings
    assert any(
        f"TULIFO_ELASTICSEARCH_URL={silent_elasticsearch} does not answer" in m for m in warnings
    ), warnings
    assert gone(pids) == []


def test_without_an_elasticsearch_url_noida_db_is_started_fresh_each_run_and_kept_over_a_restart(
    tmp_path: Path, fresh_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    # Only the stand-ins that cannot be avoided; Elasticsearch is not set at all.
    config = settings(database_url=fresh_database_url, redis_url=MACHINE_REDIS_URL)
    assert config.elasticsearch_url is None
    with LocalServices(config, state_dir=state, echo_mail=False) as first:
        status = first.status("search")
        assert status.mode is Mode.EMBEDDED
        assert "noida-db" in status.detail
        url = first.env["TULIFO_ELASTICSEARCH_URL"]
        assert elasticsearch_version(url).startswith("8.")
        created = httpx.put(f"{url}/left-over", json={}, trust_env=False, timeout=10)
        assert created.status_code == 200, created.text

        # The supervisor's restart: same port, the indices still there.
        search = first.embedded["search"]
        tree = [psutil.Process(search.proc.popen.pid)]
        tree += tree[0].children(recursive=True)
        os.killpg(search.proc.popen.pid, signal.SIGTERM)
        _, alive = psutil.wait_procs(tree, timeout=10)
        assert alive == []
        first.restart("search")
        assert httpx.get(f"{url}/left-over", trust_env=False, timeout=10).status_code == 200
    # Unset is the designed default: no WARNING about it.
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert not any("ELASTICSEARCH" in m or "noida" in m for m in warned), warned
    assert (state / "elasticsearch").is_dir()

    with LocalServices(config, state_dir=state, echo_mail=False) as second:
        url = second.env["TULIFO_ELASTICSEARCH_URL"]
        # What the first run indexed is gone: indices are rebuilt from PostgreSQL each run.
        assert httpx.get(f"{url}/left-over", trust_env=False, timeout=10).status_code == 404
        assert httpx.get(f"{url}/_cat/indices", trust_env=False, timeout=10).text.strip() == ""


def test_embedded_postgres_keeps_its_data_in_the_state_directory_between_runs(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    config = settings()
    with LocalServices(config, state_dir=state, echo_mail=False) as first:
        url = first.env["TULIFO_DATABASE_URL"]
        query(url, "CREATE TABLE kept AS SELECT 42 AS answer")
    with LocalServices(config, state_dir=state, echo_mail=False) as second:
        assert query(second.env["TULIFO_DATABASE_URL"], "SELECT answer FROM kept") == 42
    assert (state / "postgres" / "PG_VERSION").exists()


def test_a_second_launcher_on_the_same_state_directory_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with LocalServices(settings(), state_dir=state, echo_mail=False) as first:
        before = {p.pid for p in psutil.Process().children()}
        with pytest.raises(LocalServiceError, match="another tulifo launcher"):
            LocalServices(settings(), state_dir=state, echo_mail=False).start()
        assert {p.pid for p in psutil.Process().children()} == before
        assert query(first.env["TULIFO_DATABASE_URL"], "SELECT 1") == 1


def test_a_server_that_answers_but_refuses_us_stops_the_launch_and_what_it_started(
    tmp_path: Path,
) -> None:
    before = {p.pid for p in psutil.Process().children()}
    # Redis listens there, not MongoDB. PostgreSQL, Redis and Kafka stand-ins are started
    # before MongoDB is looked at, so the failure must take them down again.
    config = settings(
        mongo_url=MACHINE_REDIS_URL.replace("redis://", "mongodb://").rsplit("/", 1)[0]
    )
    with pytest.raises(Refused, match="TULIFO_MONGO_URL"):
        LocalServices(config, state_dir=tmp_path / "state", echo_mail=False).start()
    assert {p.pid for p in psutil.Process().children()} == before


def test_the_embedded_smtp_server_keeps_each_message_as_an_eml_file(tmp_path: Path) -> None:
    with LocalServices(settings(), state_dir=tmp_path / "state", echo_mail=False) as services:
        message = EmailMessage()
        message["From"] = "no-reply@tulifo.local"
        message["To"] = "ann@example.com"
        message["Subject"] = "Welcome to Tulifo Gig"
        message.set_content("Hello Ann")
        port = int(services.env["TULIFO_SMTP_PORT"])
        with smtplib.SMTP(services.env["TULIFO_SMTP_HOST"], port, timeout=10) as smtp:
            smtp.send_message(message)
        index = services.mail_dir / "index.jsonl"
        wait_for(index.exists, what="the mail index")
        entry = json.loads(index.read_text().splitlines()[0])
        assert entry["to"] == ["ann@example.com"]
        assert entry["subject"] == "Welcome to Tulifo Gig"
        assert "Hello Ann" in Path(entry["file"]).read_text()
