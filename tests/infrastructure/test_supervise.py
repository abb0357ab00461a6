"""The supervisor of `tulifo dev`: what exits is started again with a capped backoff, dependents
wait for what they depend on, and what cannot be restarted stops everything. Real processes."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from infrastructure.local.supervise import Backoff, Supervisor, stop_processes
from infrastructure.processes import ManagedProcess

DEADLINE_S = 30.0


def exits_with(code: int) -> list[str]:
    return [sys.executable, "-c", f"raise SystemExit({code})"]


def runs_until_stopped() -> list[str]:
    return [sys.executable, "-c", "import time; time.sleep(600)"]


@pytest.fixture
def started() -> Iterator[list[ManagedProcess]]:
    """Every process a test starts; whatever still runs at the end is stopped."""
    procs: list[ManagedProcess] = []
    yield procs
    stop_processes(procs, timeout=5)


def starter(
    name: str, argv: list[str], started: list[ManagedProcess]
) -> Callable[[], ManagedProcess]:
    def start() -> ManagedProcess:
        proc = ManagedProcess.spawn(name, argv)
        started.append(proc)
        return proc

    return start


def supervise_until(supervisor: Supervisor, condition: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + DEADLINE_S
    while not condition():
        assert supervisor.poll() is None
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {DEADLINE_S}s waiting for {what}")
        time.sleep(0.01)


def test_the_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff(first_s=1, max_s=30)
    assert [backoff.delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_a_child_that_keeps_exiting_keeps_being_started_again_at_the_capped_backoff(
    started: list[ManagedProcess], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tulifo.supervise")
    start = starter("flaky", exits_with(3), started)
    supervisor = Supervisor(Backoff(first_s=0.05, max_s=0.2, crash_loop_after=3))
    supervisor.watch("flaky", start(), start)

    supervise_until(supervisor, lambda: len(started) >= 7, "six restarts")

    exits = [r for r in caplog.records if r.getMessage().startswith("flaky exited with code 3;")]
    assert [getattr(r, "delay_s", None) for r in exits[:6]] == [0.05, 0.1, 0.2, 0.2, 0.2, 0.2]
    looping = [r.getMessage() for r in caplog.records if "crash-looping" in r.getMessage()]
    assert looping and "still starting it again" in looping[0]
    assert [getattr(r, "exits_in_a_row", None) for r in exits[:4]] == [1, 2, 3, 4]


def test_dependents_stop_with_what_they_depend_on_and_start_again_after_it(
    started: list[ManagedProcess], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tulifo.supervise")
    start_broker = starter("broker", runs_until_stopped(), started)
    start_worker = starter("worker", runs_until_stopped(), started)
    supervisor = Supervisor(Backoff(first_s=0.05, max_s=0.2))
    broker, worker = start_broker(), start_worker()
    supervisor.watch("broker", broker, start_broker, dependents=["worker"])
    supervisor.watch("worker", worker, start_worker)

    broker.kill()
    supervise_until(
        supervisor,
        lambda: supervisor.watched["worker"].proc is not worker,
        "the worker to be started again",
    )
    assert not worker.alive  # stopped, not left talking to a broker that lost its state
    again = supervisor.watched["broker"].proc
    assert again is not None and again is not broker and again.alive
    assert supervisor.watched["worker"].exits_in_a_row == 0  # it did not crash
    messages = [r.getMessage() for r in caplog.records]
    assert any("stopping worker until broker is back" in m for m in messages), messages
    assert not any(m.startswith("worker exited") for m in messages), messages


def test_a_child_that_cannot_be_started_again_stops_everything(
    started: list[ManagedProcess], caplog: pytest.LogCaptureFixture
) -> None:
    database = ManagedProcess.spawn("postgres", exits_with(1))
    started.append(database)
    supervisor = Supervisor()
    supervisor.watch("postgres", database, None)
    end = time.monotonic() + DEADLINE_S
    while (status := supervisor.poll()) is None:
        assert time.monotonic() < end, "the exit was never noticed"
        time.sleep(0.01)
    assert status == 1
    assert any("cannot be started again" in r.getMessage() for r in caplog.records)
