"""Signals and child processes for the long-running commands (`tulifo dev`, `tulifo services`).

Policy: a child that exits is not restarted. The supervisor logs it at ERROR with its exit code,
stops everything else and exits non-zero — a crash loop hidden behind restarts is worse in
development than a loud stop, and a production stack restarts processes itself (compose/k8s).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from types import FrameType, TracebackType

from infrastructure.processes import ManagedProcess

log = logging.getLogger("tulifo.supervise")

# How often the supervisor looks at its children; an exit is noticed within this.
POLL_S = 0.2
# uvicorn's graceful shutdown is capped below this (api/server.py); Faust needs a few seconds.
STOP_TIMEOUT_S = 15.0


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


def wait_for_exit(processes: Sequence[ManagedProcess]) -> ManagedProcess:
    """Block until one of `processes` exits and return it (signals interrupt the wait)."""
    while True:
        for proc in processes:
            if not proc.alive:
                return proc
        time.sleep(POLL_S)


class Children:
    """App processes (`tulifo api|worker|relay`) on our stdout/stderr, each in its own group."""

    def __init__(self) -> None:
        self.processes: list[ManagedProcess] = []

    def spawn(self, name: str, argv: Sequence[str], env: dict[str, str]) -> ManagedProcess:
        proc = ManagedProcess.spawn(name, argv, echo=True, env=env)
        self.processes.append(proc)
        log.info("started %s (pid %d)", name, proc.popen.pid)
        return proc

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM every group at once (they shut down in parallel), then wait; SIGKILL laggards."""
        for proc in self.processes:
            if proc.alive:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGTERM)
        end = time.monotonic() + timeout
        while self.processes:
            proc = self.processes[-1]
            try:
                proc.popen.wait(max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("%s did not stop within %.0fs; killing it", proc.name, timeout)
            # The whole group, even after a clean exit: whatever the child started goes too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.popen.pid, signal.SIGKILL)
            proc.popen.wait(5)
            self.processes.pop()
            log.info("stopped %s (exit code %s)", proc.name, proc.popen.returncode)
