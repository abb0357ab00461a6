"""The launcher uses the machine's servers when they answer and starts stand-ins when they do not,
and whatever it started is gone after it stops."""

from __future__ import annotations

import asyncio
import json
import logging
import smtplib
import time
from email.message import EmailMessage
from pathlib import Path

import asyncpg
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


def wait_for(predicate: object, *, timeout: float = 20.0, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def test_uses_the_machines_postgres_redis_and_rabbitmq_when_they_answer(
    tmp_path: Path, fresh_database_url: str
) -> None:
    config = settings(
        database_url=fresh_database_url,
        redis_url=MACHINE_REDIS_URL,
        rabbitmq_url=MACHINE_RABBITMQ_URL,
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
            "search": Mode.OFF,
        }
        env = services.env
        assert env["TULIFO_DATABASE_URL"] == fresh_database_url
        assert env["TULIFO_REDIS_URL"] == MACHINE_REDIS_URL
        assert env["TULIFO_RABBITMQ_URL"] == MACHINE_RABBITMQ_URL
        assert env["TULIFO_ELASTICSEARCH_URL"] == ""
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
        # tansu, secantus, the mail catcher, localstripe
        assert len(services.processes) == 4
    assert gone(pids) == []
    assert services.processes == []


def test_starts_embedded_postgres_and_redis_when_nothing_answers_and_says_rabbitmq_is_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = settings(elasticsearch_url=f"http://{closed()}")
    with LocalServices(config, state_dir=tmp_path / "state", echo_mail=False) as services:
        assert services.status("postgres").mode is Mode.EMBEDDED
        assert services.status("redis").mode is Mode.EMBEDDED
        assert services.status("rabbitmq").mode is Mode.OFF
        assert services.status("search").mode is Mode.OFF
        env = services.env
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
        assert child_view.elasticsearch_url is None
        pids = process_tree(services)
        assert len(pids) > len(services.processes)  # postgres has its own children
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("rabbitmq" in m and "OFF" in m and "NOT" in m for m in warnings), warnings
    assert any("PostgreSQL full-text" in m for m in warnings), warnings
    assert gone(pids) == []


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
