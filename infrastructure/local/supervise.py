"""Signals and child processes for the long-running commands (`tulifo dev`, `tulifo services`).

Policy: a child that exits is started again, after a capped exponential backoff (`Backoff`), and
every exit is logged with its code. A child that keeps exiting keeps being retried at the cap and
the log says it is crash-looping: one broken process must not take the API, the worker and the
developer's terminal down with it, and a flapping one stays visible without anyone restarting
everything by hand. Only Ctrl-C, SIGTERM or SIGHUP stop everything. A child we cannot start
again in place (`start=None`: the embedded PostgreSQL, whose clients hold its URL and port from
startup) still stops everything, with an ERROR that says why.

Some children depend on another one's state: an in-memory Kafka comes back empty, and a worker
or a relay that kept running across that would resume from offsets the new broker never had. The
dependents of a child (`watch(..., dependents=...)`) are stopped as soon as it exits and started
again only once it is back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import FrameType, TracebackType

from infrastructure.processes import ManagedProcess

log = logging.getLogger("tulifo.supervise")

# How often the supervisor looks at its children; an exit is noticed within this.
POLL_S = 0.2
# uvicorn's graceful shutdown is capped below this (api/server.py); Faust needs a few seconds.
STOP_TIMEOUT_S = 15.0
# Dependents stopped because what they depend on died: their state is void anyway, so they get
# less patience than at Ctrl-C (a Faust worker whose broker is gone can hang in its shutdown).
DEPENDENT_STOP_TIMEOUT_S = 5.0


class Interrupted(BaseException):
    """A signal (Ctrl-C, SIGTERM, SIGHUP) asked us to stop."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


class ShutdownSignals:
    """Within the block, SIGINT/SIGTERM/SIGHUP raise `Interrupted` once.

    After `cleaning_up()`, further signals are only noted, so a second Ctrl-C cannot cut the
    cleanup short and leave a database running.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.received: int | None = None
        self._cleaning = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> ShutdownSignals:
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    def cleaning_up(self) -> None:
        self._cleaning = True

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self._cleaning or self.received is not None:
            log.warning("%s received; already stopping, please wait", name)
            return
        self.received = signum
        log.info("%s received; stopping", name)
        raise Interrupted(signum)


def exit_description(returncode: int | None) -> str:
    """`3`, or `-9 (SIGKILL)` for a child a signal ended."""
    if returncode is None or returncode >= 0:
        return str(returncode)
    try:
        return f"{returncode} ({signal.Signals(-returncode).name})"
    except ValueError:
        return str(returncode)


def stop_processes(processes: Sequence[ManagedProcess], timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM every group at once (they shut down in parallel), then wait; SIGKILL laggards."""
    for proc in processes:
        if proc.alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.popen.pid, signal.SIGTERM)
    end = time.monotonic() + timeout
    for proc in reversed(processes):
        try:
            proc.popen.wait(max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("%s did not stop within %.0fs; killing it", proc.name, timeout)
        # The whole group, even after a clean exit: whatever the child started goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.popen.pid, signal.SIGKILL)
        proc.popen.wait(5)
        proc.stop()  # reaped already; closes its log file
        log.info("stopped %s (exit code %s)", proc.name, exit_description(proc.popen.returncode))


class Children:
    """App processes (`tulifo api|worker|relay`) on our stdout/stderr, each in its own group."""

    def __init__(self) -> None:
        self.processes: list[ManagedProcess] = []
        self._commands: dict[str, tuple[list[str], dict[str, str]]] = {}

    def spawn(self, name: str, argv: Sequence[str], env: dict[str, str]) -> ManagedProcess:
        self._commands[name] = (list(argv), env)
        proc = ManagedProcess.spawn(name, argv, echo=True, env=env)
        self.processes.append(proc)
        log.info("started %s (pid %d)", name, proc.popen.pid)
        return proc

    def respawn(self, name: str) -> ManagedProcess:
        """Start `name` again with the command line and environment it was first given."""
        self.stop([name], timeout=DEPENDENT_STOP_TIMEOUT_S)
        argv, env = self._commands[name]
        return self.spawn(name, argv, env)

    def stop(self, names: Iterable[str] | None = None, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop the processes called `names` (all by default), in parallel."""
        wanted = set(names) if names is not None else None
        chosen = [p for p in self.processes if wanted is None or p.name in wanted]
        self.processes = [p for p in self.processes if p not in chosen]
        stop_processes(chosen, timeout)


@dataclass(frozen=True)
class Backoff:
    """How long to wait before starting an exited child again."""

    first_s: float = 1.0
    max_s: float = 30.0
    # A child that ran this long before it exited was healthy: its count of exits starts over.
    healthy_after_s: float = 60.0
    # From this many exits in a row the log calls it crash-looping.
    crash_loop_after: int = 3

    def delay(self, exits_in_a_row: int) -> float:
        """The wait after the `exits_in_a_row`-th exit (1-based): doubling, capped at `max_s`."""
        return float(min(self.max_s, self.first_s * 2 ** min(max(exits_in_a_row, 1) - 1, 30)))


@dataclass
class Watched:
    """One child of the supervisor and its restart bookkeeping."""

    name: str
    proc: ManagedProcess | None
    # Starts a new one and returns once it is ready (raises if it could not); None: cannot.
    start: Callable[[], ManagedProcess] | None
    dependents: tuple[str, ...] = ()
    started_at: float = field(default_factory=time.monotonic)
    exits_in_a_row: int = 0
    # When to start it again; None while it runs (or while it waits for `held_by`).
    restart_at: float | None = None
    # The child it depends on, while that one is being started again.
    held_by: str | None = None


class Supervisor:
    """Watches children, restarts the ones that exit, and stops or holds their dependents."""

    def __init__(self, backoff: Backoff | None = None) -> None:
        self.backoff = backoff or Backoff()
        self.watched: dict[str, Watched] = {}
        # Called to stop dependents (by name) when what they depend on exited.
        self._stoppers: dict[str, Callable[[], None]] = {}

    def watch(
        self,
        name: str,
        proc: ManagedProcess,
        start: Callable[[], ManagedProcess] | None,
        *,
        stop: Callable[[], None] | None = None,
        dependents: Sequence[str] = (),
    ) -> None:
        """Supervise `proc` under `name`. `stop` stops it when one it depends on exits
        (default: its current process, on its own); `dependents` are names watched here too,
        each with a `start`."""
        self.watched[name] = Watched(name, proc, start, tuple(dependents))
        if stop is not None:
            self._stoppers[name] = stop

    def run(self) -> int:
        """Supervise until a signal raises `Interrupted`; returns 1 if a child that cannot be
        started again exited."""
        while True:
            failed = self.poll()
            if failed is not None:
                return failed
            time.sleep(POLL_S)

    def poll(self, now: float | None = None) -> int | None:
        """One look at every child: note exits, start what is due. Returns an exit status when a
        child that cannot be restarted has exited, else None."""
        now = time.monotonic() if now is None else now
        for child in list(self.watched.values()):
            if child.proc is None or child.proc.alive or child.restart_at is not None:
                continue
            if child.held_by is not None:
                continue
            if child.start is None:
                log.error(
                    "%s exited with code %s and cannot be started again in place; stopping "
                    "everything",
                    child.name,
                    exit_description(child.proc.popen.returncode),
                )
                return 1
            self._exited(
                child, now, f"exited with code {exit_description(child.proc.popen.returncode)}"
            )
        for child in list(self.watched.values()):
            if child.restart_at is not None and child.held_by is None and now >= child.restart_at:
                self._start(child)
        return None

    # --- internals -----------------------------------------------------------------------------

    def _exited(self, child: Watched, now: float, what: str) -> None:
        ran_for = now - child.started_at
        child.exits_in_a_row = (
            1 if ran_for >= self.backoff.healthy_after_s else child.exits_in_a_row + 1
        )
        delay = self.backoff.delay(child.exits_in_a_row)
        child.restart_at = now + delay
        log.error(
            "%s %s; starting it again in %.1fs (exit %d in a row)",
            child.name,
            what,
            delay,
            child.exits_in_a_row,
            extra={"child": child.name, "exits_in_a_row": child.exits_in_a_row, "delay_s": delay},
        )
        if child.exits_in_a_row >= self.backoff.crash_loop_after:
            log.error(
                "%s is crash-looping: %d exits in a row, each within %.0fs of its start; still "
                "starting it again, at most %.0fs apart (see its output for the cause)",
                child.name,
                child.exits_in_a_row,
                self.backoff.healthy_after_s,
                self.backoff.max_s,
            )
        self._hold_dependents(child)

    def _hold_dependents(self, child: Watched) -> None:
        held = [
            self.watched[name]
            for name in child.dependents
            if name in self.watched and self.watched[name].held_by is None
        ]
        if not held:
            return
        log.warning(
            "stopping %s until %s is back",
            ", ".join(dependent.name for dependent in held),
            child.name,
        )
        for dependent in held:
            dependent.held_by = child.name
            dependent.restart_at = None
            stop = self._stoppers.get(dependent.name)
            if stop is not None:
                stop()
            elif dependent.proc is not None:
                stop_processes([dependent.proc], DEPENDENT_STOP_TIMEOUT_S)

    def _start(self, child: Watched) -> None:
        assert child.start is not None
        child.restart_at = None
        try:
            proc = child.start()
        except Exception as exc:
            child.proc = None
            self._exited(child, time.monotonic(), f"could not be started again ({exc})")
            return
        child.proc = proc
        child.started_at = time.monotonic()
        log.info("%s is running again (pid %d)", child.name, proc.popen.pid)
        for dependent in list(self.watched.values()):
            if dependent.held_by == child.name:
                dependent.held_by = None
                # Not an exit of its own: started at once, and its count of exits stays.
                self._start(dependent)
