"""The `tulifo` command: services, dev, migrate and create-admin, run as a user would run them."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest

from infrastructure.cli import build_parser
from infrastructure.migrations import discover
from infrastructure.processes import free_port
from tests.infrastructure.conftest import (
    MACHINE_RABBITMQ_URL,
    MACHINE_REDIS_URL,
    StartTulifo,
    clean_env,
    descendants,
    gone,
    running,
    tulifo_argv,
)

COMMANDS = ["dev", "services", "api", "worker", "relay", "migrate", "create-admin"]
# Each child stops within a few seconds of its SIGTERM (uvicorn's graceful shutdown is capped at
# 8 s); the deadline only bounds a failure.
ORPHANS_DEADLINE_S = 30.0


def closed(scheme: str = "") -> str:
    return f"{scheme}127.0.0.1:{free_port()}"


def nothing_answers() -> dict[str, str]:
    """Environment for a launcher that must start every stand-in it has."""
    return {
        "TULIFO_DATABASE_URL": f"postgresql://postgres@{closed()}/tulifo_dev",
        "TULIFO_REDIS_URL": f"redis://{closed()}/0",
        "TULIFO_KAFKA_BOOTSTRAP": closed(),
        "TULIFO_MONGO_URL": f"mongodb://{closed()}",
        "TULIFO_RABBITMQ_URL": f"amqp://guest:guest@{closed()}/",
        "TULIFO_SMTP_PORT": str(free_port()),
    }


async def _fetch(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def fetch(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    return asyncio.run(_fetch(url, sql, *args))


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_explains_itself(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: tulifo {command}" in capsys.readouterr().out


def test_create_admin_takes_no_password_argument() -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(
            ["create-admin", "--email", "a@example.com", "--name", "A", "--password", "secret"]
        )
    assert exit_info.value.code == 2


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_services_prints_the_environment_and_stops_every_stand_in_on_a_signal(
    run_tulifo: StartTulifo, tmp_path: Path, sig: signal.Signals
) -> None:
    tulifo = run_tulifo(
        ["services", "--state-dir", str(tmp_path / "state")], clean_env(**nothing_answers())
    )
    tulifo.wait_for_line("# ready")
    exports = tulifo.exports()
    assert fetch(exports["TULIFO_DATABASE_URL"], "SELECT 1 AS one")[0]["one"] == 1
    assert exports["TULIFO_RABBITMQ_URL"] == ""
    assert any("rabbitmq" in line and "OFF" in line for line in tulifo.lines)
    tree = descendants(tulifo.popen.pid)
    # postgres (+ its backends), redis, tansu, secantus, the mail catcher
    assert len(tree) >= 5
    tulifo.signal(sig)
    assert tulifo.wait() == 0
    assert gone(tree) == []


def test_migrate_applies_every_migration_to_a_fresh_database_once(
    run_tulifo: StartTulifo, fresh_database_url: str
) -> None:
    env = clean_env(TULIFO_DATABASE_URL=fresh_database_url)
    first = run_tulifo(["migrate"], env)
    assert first.wait() == 0, first.context()
    first.drain()
    names = [m.name for m in discover()]
    printed = [line.removeprefix("applied ") for line in first.lines if line.startswith("applied")]
    assert printed == names
    rows = fetch(fresh_database_url, "SELECT name FROM schema_migrations ORDER BY version")
    assert [r["name"] for r in rows] == names

    second = run_tulifo(["migrate"], env)
    assert second.wait() == 0
    assert "up to date" in second.wait_for_line("up to date")


def test_create_admin_reads_the_password_from_stdin(tmp_path: Path, database_url: str) -> None:
    email = f"admin-{free_port()}@example.com"
    result = subprocess.run(
        tulifo_argv("create-admin", "--email", email, "--name", "Ada Admin", "--password-stdin"),
        input="correct horse battery staple\n",
        env=clean_env(TULIFO_DATABASE_URL=database_url, TULIFO_BCRYPT_ROUNDS="4"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    rows = fetch(database_url, "SELECT id, role FROM users WHERE email = $1", email)
    assert [r["role"] for r in rows] == ["admin"]
    assert str(rows[0]["id"]) in result.stdout


def test_create_admin_without_a_terminal_or_stdin_flag_refuses_to_guess(
    tmp_path: Path, database_url: str
) -> None:
    result = subprocess.run(
        tulifo_argv("create-admin", "--email", "nobody@example.com", "--name", "No Body"),
        input="piped-but-not-announced\n",
        env=clean_env(TULIFO_DATABASE_URL=database_url),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "--password-stdin" in result.stderr
    assert fetch(database_url, "SELECT 1 FROM users WHERE email = 'nobody@example.com'") == []


def dev_env(database_url: str) -> dict[str, str]:
    """The machine's PostgreSQL, Redis and RabbitMQ; stand-ins for Kafka, MongoDB and SMTP."""
    return clean_env(
        TULIFO_DATABASE_URL=database_url,
        TULIFO_REDIS_URL=MACHINE_REDIS_URL,
        TULIFO_RABBITMQ_URL=MACHINE_RABBITMQ_URL,
        TULIFO_KAFKA_BOOTSTRAP=closed(),
        TULIFO_MONGO_URL=f"mongodb://{closed()}",
        TULIFO_SMTP_PORT=str(free_port()),
        TULIFO_TOPIC_PREFIX=f"dev{free_port()}",
    )


def dev_args(port: int, tmp_path: Path) -> list[str]:
    return ["dev", "--port", str(port), "--state-dir", str(tmp_path / "state")]


def test_dev_serves_the_api_and_ctrl_c_stops_everything(
    run_tulifo: StartTulifo, tmp_path: Path, fresh_database_url: str
) -> None:
    port = free_port()
    tulifo = run_tulifo(
        [*dev_args(port, tmp_path), "--without", "worker", "--without", "relay"],
        dev_env(fresh_database_url),
    )
    tulifo.wait_for_line("Ctrl-C stops everything")
    banner = "\n".join(tulifo.lines)
    assert f"http://127.0.0.1:{port}/docs" in banner
    assert str(tmp_path / "state" / "mail") in banner
    assert httpx.get(f"http://127.0.0.1:{port}/health", trust_env=False).status_code == 200
    assert httpx.get(f"http://127.0.0.1:{port}/docs", trust_env=False).status_code == 200
    # Migrations ran before the API started.
    assert fetch(fresh_database_url, "SELECT count(*) AS n FROM schema_migrations")[0]["n"] == len(
        discover()
    )
    tree = descendants(tulifo.popen.pid)
    tulifo.signal(signal.SIGINT)
    assert tulifo.wait() == 0
    assert gone(tree) == []


def test_dev_starts_a_crashed_process_again_and_ctrl_c_still_stops_everything(
    run_tulifo: StartTulifo, tmp_path: Path, fresh_database_url: str
) -> None:
    port = free_port()
    tulifo = run_tulifo(
        [*dev_args(port, tmp_path), "--without", "worker"],
        dev_env(fresh_database_url),
    )
    tulifo.wait_for_line("Ctrl-C stops everything")
    relay = app_processes(tulifo.popen.pid)["relay"]
    relay.kill()
    end = time.monotonic() + ORPHANS_DEADLINE_S
    while (again := app_processes(tulifo.popen.pid).get("relay")) is None or again.pid == relay.pid:
        assert tulifo.popen.poll() is None, tulifo.context()
        assert time.monotonic() < end, f"the relay was not started again{tulifo.context()}"
        time.sleep(0.1)
    log = tulifo.stderr_path.read_text()
    assert "relay exited with code -9 (SIGKILL); starting it again" in log
    assert httpx.get(f"http://127.0.0.1:{port}/health", trust_env=False).status_code == 200
    tree = descendants(tulifo.popen.pid)
    tulifo.signal(signal.SIGTERM)
    assert tulifo.wait() == 0
    assert gone(tree) == []


def app_processes(launcher: int) -> dict[str, psutil.Process]:
    """The launcher's `tulifo api|worker|relay` children, by role."""
    found = {}
    for child in psutil.Process(launcher).children():
        with contextlib.suppress(psutil.NoSuchProcess):
            command = child.cmdline()
            if "infrastructure.cli" in command and child.status() != psutil.STATUS_ZOMBIE:
                found[command[-1] if command[-1] in ("worker", "relay") else "api"] = child
    return found


def test_dev_killed_outright_takes_every_process_it_started_with_it(
    run_tulifo: StartTulifo, tmp_path: Path
) -> None:
    # Every stand-in embedded, PostgreSQL too: its backends are the launcher's grandchildren.
    env = clean_env(**nothing_answers(), TULIFO_TOPIC_PREFIX=f"dev{free_port()}")
    tulifo = run_tulifo(dev_args(free_port(), tmp_path), env)
    tulifo.wait_for_line("Ctrl-C stops everything")
    launcher = psutil.Process(tulifo.popen.pid)
    tree = launcher.children(recursive=True)
    commands = {proc.pid: " ".join(proc.cmdline()) for proc in tree}
    try:
        for role in ("api", "worker", "relay"):
            assert any(f"infrastructure.cli {role}" in command for command in commands.values())
        assert len(tree) > len(launcher.children())
        # SIGKILL, as the OOM killer sends: no signal handler, `finally` or atexit hook runs.
        launcher.kill()
        assert tulifo.wait() == -signal.SIGKILL
        end = time.monotonic() + ORPHANS_DEADLINE_S
        while (left := running(tree)) and time.monotonic() < end:
            time.sleep(0.1)
        assert [commands[proc.pid] for proc in left] == []
    finally:
        for proc in running(tree):
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
