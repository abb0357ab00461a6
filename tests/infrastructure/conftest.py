"""Helpers for the launcher and CLI tests: fresh databases, closed ports, `tulifo` subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest

from infrastructure.processes import free_port
from tests.databases import PG_ADMIN_URL

PG_SERVER = PG_ADMIN_URL.rsplit("/", 1)[0]
# What the machine runs (DESIGN.md §5, CI): the launcher must pick these up when they answer.
MACHINE_REDIS_URL = os.environ.get("TULIFO_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
MACHINE_RABBITMQ_URL = os.environ.get(
    "TULIFO_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"
)
# Generous: pgserver's initdb and SecantusDB's imports dominate, a few seconds on a slow machine.
STARTUP_DEADLINE_S = 90.0


async def _drop(name: str) -> None:
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def fresh_database_url() -> Iterator[str]:
    """A URL on the machine's PostgreSQL naming a database that does not exist yet."""
    name = f"tulifo_launcher_{uuid.uuid4().hex[:10]}"
    yield f"{PG_SERVER}/{name}"
    asyncio.run(_drop(name))


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on."""
    return free_port()


def tulifo_argv(*args: str) -> list[str]:
    """The `tulifo` command line, run by this interpreter."""
    return [sys.executable, "-m", "infrastructure.cli", *args]


def clean_env(**tulifo: str) -> dict[str, str]:
    """This process's environment without any TULIFO_* a developer may have set, plus `tulifo`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TULIFO_")}
    env.update(tulifo)
    return env


def gone(pids: list[int]) -> list[int]:
    """The pids in `pids` that still exist (as anything but a zombie awaiting its parent)."""
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def running(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those of `procs` still running as anything but a zombie (a reused pid does not count)."""
    alive = []
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
    return alive


def descendants(pid: int) -> list[int]:
    return [p.pid for p in psutil.Process(pid).children(recursive=True)]


class Tulifo:
    """A `tulifo ...` subprocess whose stdout is read line by line, each wait with a deadline."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.stderr_path = cwd / f"stderr-{len(list(cwd.glob('stderr-*')))}.log"
        self._stderr = self.stderr_path.open("wb")
        self.popen = subprocess.Popen(
            tulifo_argv(*args),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for_line(self, needle: str, deadline_s: float = STARTUP_DEADLINE_S) -> str:
        end = time.monotonic() + deadline_s
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line with {needle!r} in {deadline_s}s{self.context()}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(
                    f"exited ({self.popen.wait()}) before printing {needle!r}{self.context()}"
                )
            self.lines.append(line)
            if needle in line:
                return line

    def drain(self, deadline_s: float = STARTUP_DEADLINE_S) -> list[str]:
        """Every line up to the end of output (the process has exited or is about to)."""
        end = time.monotonic() + deadline_s
        while (remaining := end - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                return self.lines
            self.lines.append(line)
        raise AssertionError(f"output did not end within {deadline_s}s{self.context()}")

    def exports(self) -> dict[str, str]:
        """The `export KEY=value` lines printed so far (values unquoted the shell's way)."""
        import shlex

        found = {}
        for line in self.lines:
            if line.startswith("export "):
                key, _, value = line[len("export ") :].partition("=")
                found[key] = shlex.split(value)[0] if value else ""
        return found

    def signal(self, sig: signal.Signals) -> None:
        self.popen.send_signal(sig)

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"did not exit within {timeout}s{self.context()}") from None

    def context(self) -> str:
        self._stderr.flush()
        tail = self.stderr_path.read_text(errors="replace")[-4000:]
        return "\nstdout:\n" + "\n".join(self.lines[-40:]) + "\nstderr (tail):\n" + tail

    def close(self) -> None:
        """Last resort if a test failed midway: take the whole tree down."""
        if self.popen.poll() is None:
            tree = descendants(self.popen.pid)
            self.popen.kill()
            self.popen.wait(10)
            for pid in tree:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        self._stderr.close()


StartTulifo = Callable[[list[str], dict[str, str]], Tulifo]


@pytest.fixture
def run_tulifo(tmp_path: Path) -> Iterator[StartTulifo]:
    """Start `tulifo ARGS` in tmp_path; whatever is still running at the end is killed."""
    started: list[Tulifo] = []

    def start(args: list[str], env: dict[str, str]) -> Tulifo:
        tulifo = Tulifo(args, env, tmp_path)
        started.append(tulifo)
        return tulifo

    yield start
    for tulifo in started:
        tulifo.close()
