"""What `LocalServices` (infrastructure/local/services.py) is built on: the found-or-embedded
decision and the bookkeeping of what was started.

`ServiceLauncher` records one `ServiceStatus` and the `TULIFO_*` variables per service, starts a
stand-in and waits until it listens, starts it again on the same port (`restart`), and stops
everything it started (`stop`). Which services there are, and how each stand-in is started, is
services.py's part.
"""

from __future__ import annotations

import atexit
import contextlib
import enum
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from infrastructure.local.probes import PROBE_TIMEOUT_S, LocalServiceError, Probe, redact
from infrastructure.processes import ManagedProcess, wait_for_port
from infrastructure.settings import Settings

log = logging.getLogger("tulifo.local")

# Tansu is ready in milliseconds, SecantusDB and the mail catcher import Python first (~1-2 s).
READY_DEADLINE_S = 30.0


class Mode(enum.StrEnum):
    CONFIGURED = "configured"
    EMBEDDED = "embedded"
    OFF = "off"


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    mode: Mode
    url: str | None
    detail: str

    def line(self) -> str:
        mode = "OFF" if self.mode is Mode.OFF else self.mode.value
        where = redact(self.url) if self.url else ""
        return f"{self.name:<10} {mode:<10} {where}{'  ' if where else ''}{self.detail}".rstrip()


@dataclass
class Embedded:
    """A stand-in we run, and how to run it again on the same port."""

    service: str  # kafka, mongodb, ...
    name: str  # its process: "kafka (tansu)"
    argv: list[str]
    port: int
    proc: ManagedProcess
    # Keeps its data in memory: comes back empty after a restart.
    volatile: bool
    log_name: str = ""
    echo: bool = False
    # Runs once it listens again (localstripe forgets its webhook endpoint).
    after_restart: list[Callable[[], None]] = field(default_factory=list)


class ServiceLauncher:
    """The statuses and `env` handed out, and the processes started, restarted and stopped."""

    def __init__(
        self,
        settings: Settings,
        *,
        state_dir: Path,
        probe_timeout: float = PROBE_TIMEOUT_S,
        echo_mail: bool = True,
        api_url: str | None = None,
    ) -> None:
        """`api_url`: where the API listens (http://127.0.0.1:8000), for an embedded Stripe's
        webhooks; None sends none."""
        self.settings = settings
        self.state_dir = state_dir.resolve()
        self.logs_dir = self.state_dir / "logs"
        self.mail_dir = self.state_dir / "mail"
        self.probe_timeout = probe_timeout
        self.echo_mail = echo_mail
        self.api_url = api_url
        self.statuses: list[ServiceStatus] = []
        self.env: dict[str, str] = {}
        self._processes: list[ManagedProcess] = []
        self._releases: list[Callable[[], None]] = []
        # The stand-ins that `restart` can start again, by service.
        self.embedded: dict[str, Embedded] = {}

    # --- lifecycle ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop what we started, last first. Safe to call again, and again after an interruption."""
        while self._processes:
            proc = self._processes[-1]
            try:
                proc.stop()
                # Anything the server itself started and left behind in its group goes too.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.popen.pid, signal.SIGKILL)
            except Exception:
                log.exception("could not stop %s (pid %d)", proc.name, proc.popen.pid)
            self._processes.pop()
            log.info("stopped %s", proc.name)
        while self._releases:
            self._releases.pop()()
        atexit.unregister(self.stop)

    @property
    def processes(self) -> list[ManagedProcess]:
        """The processes we started and have not stopped yet."""
        return list(self._processes)

    def status(self, name: str) -> ServiceStatus:
        return next(s for s in self.statuses if s.name == name)

    def summary(self) -> list[str]:
        return [status.line() for status in self.statuses]

    # --- helpers ------------------------------------------------------------------------------

    def _register(self, proc: ManagedProcess) -> None:
        self._processes.append(proc)

    def _forget(self, proc: ManagedProcess) -> None:
        """Drop an exited process, and anything it left behind in its group (which could hold
        its port)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.popen.pid, signal.SIGKILL)
        proc.stop()  # reaped already; closes its log file
        if proc in self._processes:
            self._processes.remove(proc)

    def _spawn(
        self,
        service: str,
        name: str,
        argv: list[str],
        port: int,
        *,
        volatile: bool,
        log_name: str = "",
        echo: bool = False,
    ) -> Embedded:
        """Start a stand-in and wait until it listens on `port`. Its output goes to
        logs/<log_name or the first word of name>.log, or with `echo` to our own terminal."""
        proc = self._launch(name, argv, log_name=log_name, echo=echo)
        embedded = Embedded(service, name, argv, port, proc, volatile, log_name, echo)
        self.embedded[service] = embedded
        self._wait_listening(proc, port)
        return embedded

    def _launch(self, name: str, argv: list[str], *, log_name: str, echo: bool) -> ManagedProcess:
        log_path = None if echo else self.logs_dir / f"{log_name or name.split()[0]}.log"
        proc = ManagedProcess.spawn(name, argv, log_path=log_path, echo=echo)
        self._register(proc)
        return proc

    @staticmethod
    def _wait_listening(proc: ManagedProcess, port: int) -> None:
        try:
            wait_for_port("127.0.0.1", port, deadline_s=READY_DEADLINE_S, proc=proc)
        except (RuntimeError, TimeoutError) as exc:
            raise LocalServiceError(f"{proc.name} did not start: {exc}") from exc

    def restart(self, service: str) -> ManagedProcess:
        """Start the stand-in of `service` again, on its port, once its process has gone; returns
        the new process once it listens (raises LocalServiceError if it does not)."""
        embedded = self.embedded[service]
        old = embedded.proc
        if old.alive:
            raise LocalServiceError(f"{embedded.name} (pid {old.popen.pid}) is still running")
        self._forget(old)
        proc = self._launch(
            embedded.name, embedded.argv, log_name=embedded.log_name, echo=embedded.echo
        )
        embedded.proc = proc
        try:
            self._wait_listening(proc, embedded.port)
            for step in embedded.after_restart:
                step()
        except BaseException:
            # Not half-started: the next attempt must find the port free and this one gone.
            proc.kill()
            raise
        if embedded.volatile:
            log.warning(
                "%s is back on port %d, empty: it keeps its data in memory",
                embedded.name,
                embedded.port,
            )
        else:
            log.info("%s is back on port %d", embedded.name, embedded.port)
        return embedded.proc

    def _record(
        self,
        name: str,
        mode: Mode,
        url: str | None,
        detail: str,
        *,
        probe: Probe | None = None,
        loud: bool | None = None,
    ) -> None:
        """Log one line per service; OFF is a WARNING unless `loud=False` (a designed default)."""
        status = ServiceStatus(name, mode, url, detail)
        self.statuses.append(status)
        message = status.line()
        if probe is not None and not probe.answers:
            message += f" (configured one does not answer: {probe.reason})"
        level = logging.WARNING if (mode is Mode.OFF if loud is None else loud) else logging.INFO
        log.log(level, message, extra={"dependency": name, "mode": mode.value})

    def _found_or_embedded(
        self,
        name: str,
        setting: str,
        probe: Callable[[str, float], Probe],
        embed: Callable[[], tuple[str, str]],
    ) -> Mode:
        """The server `settings.<setting>` names if it answers, else the stand-in `embed` starts
        (it returns the stand-in's URL and a line about it); the URL goes to TULIFO_<SETTING>."""
        configured: str = getattr(self.settings, setting)
        found = probe(configured, self.probe_timeout)
        if found.answers:
            note = "database created" if found.created_database else ""
            self._record(name, Mode.CONFIGURED, configured, note)
            url = configured
        else:
            if setting in self.settings.model_fields_set:
                # An address the user set on purpose that does not answer deserves a WARNING.
                log.warning(
                    "%s: TULIFO_%s=%s does not answer (%s); starting an embedded one instead",
                    name,
                    setting.upper(),
                    redact(configured),
                    found.reason,
                )
            url, detail = embed()
            self._record(name, Mode.EMBEDDED, url, detail, probe=found)
        self.env[f"TULIFO_{setting.upper()}"] = url
        return Mode.CONFIGURED if found.answers else Mode.EMBEDDED

    def _found_or_off(
        self,
        name: str,
        setting: str,
        probe: Callable[[str, float], Probe],
        *,
        when_unset: str,
        when_silent: str,
        detail: str = "",
        warn_unset: bool = True,
    ) -> None:
        """The server `settings.<setting>` names if one is set and answers, else the feature is
        OFF: no stand-in exists here. `when_silent` gets the redacted {url} and the {reason}."""
        key = f"TULIFO_{setting.upper()}"
        configured: str | None = getattr(self.settings, setting)
        if configured is None:
            self._record(name, Mode.OFF, None, when_unset, loud=warn_unset)
            self.env[key] = ""
            return
        found = probe(configured, self.probe_timeout)
        if found.answers:
            self._record(name, Mode.CONFIGURED, configured, detail)
            self.env[key] = configured
        else:
            silent = when_silent.format(url=redact(configured), reason=found.reason)
            self._record(name, Mode.OFF, None, silent)
            self.env[key] = ""
