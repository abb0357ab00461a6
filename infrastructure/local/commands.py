"""`tulifo dev` and `tulifo services`: the local services, and with `dev` the API, worker and
relay, supervised until a signal (infrastructure/local/supervise.py).

    tulifo dev            local services + migrations + API, worker and relay, until Ctrl-C
    tulifo services       local services only; prints `export TULIFO_...` lines

The one-process commands are in infrastructure/cli.py, which registers these two first.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from infrastructure.command import CommandError, configure_command_logging
from infrastructure.local import LocalServices, Mode
from infrastructure.local.supervise import (
    DEPENDENT_STOP_TIMEOUT_S,
    Backoff,
    Children,
    Interrupted,
    ShutdownSignals,
    Supervisor,
)
from infrastructure.processes import ManagedProcess, port_open
from infrastructure.settings import Settings

# The name these commands have always logged under: their log lines read as before the move.
log = logging.getLogger("tulifo.cli")

DEFAULT_STATE_DIR = Path(".tulifo")
# The API imports the whole app and opens its pools; 60 s is generous on a cold laptop.
API_READY_DEADLINE_S = 60.0
# The processes `tulifo dev` runs next to the API, and the module each needs.
# The bridge runs only while RabbitMQ is on (`_dev`).
BACKGROUND = {
    "worker": "streams.worker",
    "relay": "bridges.relay",
    "bridge": "bridges.rabbitmq",
    "jobs": "bridges.jobs",
}


def _state_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="where embedded PostgreSQL data, captured mail and logs go (default: .tulifo)",
    )


# --- tulifo dev -------------------------------------------------------------------------------


def _dev(args: argparse.Namespace, settings: Settings) -> int:
    from infrastructure.migrations import migrate

    configure_command_logging(settings, "dev")
    background = [name for name in BACKGROUND if name not in args.without]
    for name in background:
        if importlib.util.find_spec(BACKGROUND[name]) is None:
            raise CommandError(f"{BACKGROUND[name]} is missing; run with --without {name}")
    host, port = args.host or settings.api_host, args.port or settings.api_port
    local_host = _local_address(host)
    if port_open(local_host, port):
        raise CommandError(f"port {port} is already in use; choose another with --port")
    base_url = f"http://{local_host}:{port}"
    with ShutdownSignals() as signals:
        # An embedded Stripe (localstripe) sends its signed webhooks to this API.
        services = LocalServices(settings, state_dir=args.state_dir, api_url=base_url)
        children = Children()
        try:
            services.start()
            applied = asyncio.run(migrate(services.env["TULIFO_DATABASE_URL"]))
            log.info("migrations: %s", ", ".join(applied) or "up to date")
            env = {**os.environ, **services.env}
            env.update(TULIFO_API_HOST=host, TULIFO_API_PORT=str(port))
            env.setdefault("TULIFO_PUBLIC_URL", base_url)
            me = [sys.executable, "-m", "infrastructure.cli"]
            api = children.spawn("api", [*me, "api", "--host", host, "--port", str(port)], env)
            for name in background:
                if name == "bridge" and services.status("rabbitmq").mode is Mode.OFF:
                    continue  # said loudly in the services' summary
                children.spawn(name, [*me, name], env)
            _wait_for_api(f"{base_url}/health", lambda: api.alive)
            print(_banner(base_url, services, children.processes), flush=True)
            return _supervise(services, children)
        except Interrupted:
            return 0
        finally:
            signals.cleaning_up()
            children.stop()
            services.stop()


def _supervise(services: LocalServices, children: Children | None = None) -> int:
    """Restart whatever exits, until a signal; returns 1 if a process that cannot be restarted
    in place (the embedded PostgreSQL) exited."""
    supervisor = Supervisor(Backoff())
    app = {proc.name for proc in children.processes} if children is not None else set()
    restartable = {id(embedded.proc) for embedded in services.embedded.values()}
    for proc in services.processes:
        if id(proc) not in restartable:
            supervisor.watch(proc.name, proc, None)
    for embedded in services.embedded.values():
        # A worker or relay that outlived an in-memory broker would go on from offsets and
        # producer state the new one never had: they stop with it and start after it, and the
        # relay then republishes the outbox into the empty broker (bridges/relay.py).
        volatile_kafka = embedded.service == "kafka" and embedded.volatile
        dependents = [
            name for name in ("relay", "worker", "bridge") if volatile_kafka and name in app
        ]
        if volatile_kafka and children is None:
            # `tulifo services`: the worker and relay run by hand.
            def remind() -> None:
                log.warning(
                    "Kafka came back empty: restart `tulifo relay` and `tulifo worker` so the "
                    "relay republishes the outbox and the worker starts over"
                )

            embedded.after_restart.append(remind)

        def restart(service: str = embedded.service) -> ManagedProcess:
            return services.restart(service)

        supervisor.watch(embedded.name, embedded.proc, restart, dependents=dependents)
    if children is not None:
        for proc in children.processes:

            def respawn(name: str = proc.name) -> ManagedProcess:
                assert children is not None
                return children.respawn(name)

            def stop(name: str = proc.name) -> None:
                assert children is not None
                children.stop([name], timeout=DEPENDENT_STOP_TIMEOUT_S)

            supervisor.watch(proc.name, proc, respawn, stop=stop)
    return supervisor.run()


def _local_address(host: str) -> str:
    """Where this machine reaches a server listening on `host` (a wildcard means loopback)."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104


def _wait_for_api(url: str, alive: Callable[[], bool]) -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per poll otherwise
    end = time.monotonic() + API_READY_DEADLINE_S
    with httpx.Client(timeout=2, trust_env=False) as client:
        while time.monotonic() < end:
            if not alive():
                raise CommandError("the API process exited during startup; see its log above")
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    raise CommandError(f"the API did not answer {url} within {API_READY_DEADLINE_S:.0f}s")


def _banner(base_url: str, services: LocalServices, processes: Sequence[ManagedProcess]) -> str:
    smtp = services.status("smtp")
    if smtp.mode is Mode.EMBEDDED:
        mail = f"saved as .eml files in {services.mail_dir}  (SMTP {smtp.url})"
    else:
        mail = f"sent to the configured server {smtp.url}"
    stripe = services.status("stripe")
    if stripe.mode is Mode.EMBEDDED:
        payments = f"localstripe at {stripe.url}  (card pm_card_visa; README: Try a payment)"
    else:
        payments = f"Stripe {stripe.url}"
    procs = ", ".join(f"{p.name} (pid {p.popen.pid})" for p in processes)
    embedded = [s.name for s in services.statuses if s.mode is Mode.EMBEDDED]
    volatile = [name for name in embedded if name in ("redis", "stripe")]
    note = f"  ({', '.join(volatile)}: in memory, gone when this stops)" if volatile else ""
    rule = "─" * 78
    lines = [
        rule,
        " Tulifo Gig is running",
        f"   API         {base_url}",
        f"   API docs    {base_url}/docs",
        f"   readiness   {base_url}/health/ready",
        f"   mail        {mail}",
        f"   payments    {payments}",
        f"   processes   {procs}",
        f"   embedded    {', '.join(embedded) or 'nothing'}{note}",
        "",
        *(f"   {line}" for line in services.summary()),
        "",
        " Ctrl-C stops everything. A process that exits is started again (backoff up to "
        f"{Backoff().max_s:.0f}s).",
        rule,
    ]
    return "\n".join(lines)


# --- tulifo services --------------------------------------------------------------------------


def _services(args: argparse.Namespace, settings: Settings) -> int:
    configure_command_logging(settings, "services")
    # An embedded Stripe sends its webhooks where `tulifo api` will listen by these settings.
    api_url = f"http://{_local_address(settings.api_host)}:{settings.api_port}"
    with ShutdownSignals() as signals:
        services = LocalServices(settings, state_dir=args.state_dir, api_url=api_url)
        try:
            services.start()
            for key, value in services.env.items():
                print(f"export {key}={shlex.quote(value)}")
            for line in services.summary():
                print(f"# {line}")
            print("# ready: local services are up; Ctrl-C stops them", flush=True)
            return _supervise(services)
        except Interrupted:
            return 0
        finally:
            signals.cleaning_up()
            services.stop()


# --- their arguments --------------------------------------------------------------------------


def add_local_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `dev` and `services` with the `tulifo` parser."""
    dev = sub.add_parser(
        "dev",
        help="run everything locally: services, migrations, API, worker, relay",
        description="Use the configured services that answer and start embedded stand-ins for "
        "the others, apply migrations, then run the API, the Faust worker and the outbox relay "
        "until Ctrl-C. A process or embedded service that exits is started again, with a "
        "capped exponential backoff.",
    )
    dev.add_argument("--port", type=int, help="API port (default: TULIFO_API_PORT, 8000)")
    dev.add_argument("--host", help="API address (default: TULIFO_API_HOST, 127.0.0.1)")
    dev.add_argument(
        "--without",
        action="append",
        default=[],
        choices=sorted(BACKGROUND),
        help="do not run this process (repeatable), e.g. to run it under a debugger yourself",
    )
    _state_dir(dev)
    dev.set_defaults(handler=_dev)

    services = sub.add_parser(
        "services",
        help="start only the local services and print their TULIFO_* variables",
        description="Start the local services (embedded where nothing answers), print "
        "`export TULIFO_...=...` lines to paste into other shells, and wait until Ctrl-C.",
    )
    _state_dir(services)
    services.set_defaults(handler=_services)
