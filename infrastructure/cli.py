"""The `tulifo` command: run the system locally, or one of its processes.

    tulifo dev            local services + migrations + API, worker and relay, until Ctrl-C
    tulifo services       local services only; prints `export TULIFO_...` lines
    tulifo api|worker|relay
    tulifo migrate
    tulifo replay         rebuild topics, tables and read models from the outbox
    tulifo create-admin --email ... --name ...

Settings come from `TULIFO_*` environment variables (infrastructure/settings.py).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import importlib.util
import logging
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
from pydantic import ValidationError

from infrastructure.local import LocalServiceError, LocalServices, Mode
from infrastructure.local.supervise import (
    DEPENDENT_STOP_TIMEOUT_S,
    Backoff,
    Children,
    Interrupted,
    ShutdownSignals,
    Supervisor,
)
from infrastructure.logging import configure_logging
from infrastructure.processes import ManagedProcess, port_open
from infrastructure.settings import Settings, get_settings

log = logging.getLogger("tulifo.cli")

DEFAULT_STATE_DIR = Path(".tulifo")
# The API imports the whole app and opens its pools; 60 s is generous on a cold laptop.
API_READY_DEADLINE_S = 60.0
# The processes `tulifo dev` runs next to the API, and the module each needs.
BACKGROUND = {"worker": "streams.worker", "relay": "bridges.relay"}
EXIT_USAGE = 2


class CommandError(Exception):
    """A failure the user can fix; printed without a traceback."""


def _logging(settings: Settings, role: str) -> None:
    configure_logging(
        service=f"{settings.service_name}-{role}",
        level=settings.log_level,
        json_lines=settings.log_json,
    )


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

    _logging(settings, "dev")
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
        dependents = [name for name in ("relay", "worker") if volatile_kafka and name in app]
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
    _logging(settings, "services")
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


# --- one process each -------------------------------------------------------------------------


def _api(args: argparse.Namespace, settings: Settings) -> int:
    from api.server import serve

    _logging(settings, "api")
    serve(
        settings,
        host=args.host,
        port=args.port,
        workers=args.workers,
        proxy_headers=args.proxy_headers,
        forwarded_allow_ips=args.forwarded_allow_ips,
    )
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    _logging(settings, "worker")
    from streams.worker import main

    main(settings)
    return 0


def _relay(args: argparse.Namespace, settings: Settings) -> int:
    _logging(settings, "relay")
    from bridges.relay import main

    main(settings)
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from infrastructure.local.probes import ensure_database, redact
    from infrastructure.migrations import discover, migrate

    _logging(settings, "migrate")

    async def run() -> tuple[bool, list[str]]:
        created = await ensure_database(settings.database_url)
        return created, await migrate(settings.database_url)

    created, applied = asyncio.run(run())
    target = redact(settings.database_url)
    if created:
        print(f"created database {target}")
    for name in applied:
        print(f"applied {name}")
    if not applied:
        print(f"{target} is up to date ({len(discover())} migrations)")
    return 0


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from bridges.replay import ReplayRefused, replay

    _logging(settings, "replay")
    target = settings.model_copy(
        update={
            "database_url": args.database_url or settings.database_url,
            "topic_prefix": args.topic_prefix or f"{settings.topic_prefix}-r{args.stamp}",
            "faust_app_id": args.app_id or f"{settings.faust_app_id}-r{args.stamp}",
            "faust_data_dir": str(Path(settings.faust_data_dir) / f"replay-{args.stamp}"),
            "faust_web_port": None,
        }
    )
    try:
        report = asyncio.run(
            replay(
                settings, target, in_place=args.in_place, deadline_s=args.timeout, progress=print
            )
        )
    except (ReplayRefused, TimeoutError, RuntimeError) as exc:
        raise CommandError(str(exc)) from exc
    print(
        f"replayed {report.events} events in {report.seconds:.1f}s into topics "
        f"{report.topic_prefix}.* (app id {report.app_id})"
    )
    return 0


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif not sys.stdin.isatty():
        raise CommandError("no terminal to prompt on; pipe the password in with --password-stdin")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != password:
            raise CommandError("the passwords differ")
    if not password:
        raise CommandError("the password is empty")
    return password


def _create_admin(args: argparse.Namespace, settings: Settings) -> int:
    from api.auth.admin import create_admin
    from api.errors import TulifoError
    from infrastructure.database import create_pool

    _logging(settings, "admin")
    password = _read_password(args)

    async def run() -> str:
        pool = await create_pool(settings.database_url, min_size=1, max_size=2)
        try:
            user_id = await create_admin(
                pool=pool,
                email=args.email,
                password=password,
                name=args.name,
                rounds=settings.bcrypt_rounds,
            )
        finally:
            await pool.close()
        return str(user_id)

    try:
        user_id = asyncio.run(run())
    except TulifoError as exc:
        raise CommandError(exc.message) from exc
    print(f"admin {args.email}: {user_id}")
    return 0


# --- the parser -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tulifo",
        description="Tulifo Gig: run the marketplace backend or one of its processes. "
        "Settings come from TULIFO_* environment variables.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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

    api = sub.add_parser(
        "api",
        help="serve the HTTP API with uvicorn",
        description="Serve api.app:create_app with uvicorn on TULIFO_API_HOST:TULIFO_API_PORT.",
    )
    api.add_argument("--host", help="address (default: TULIFO_API_HOST)")
    api.add_argument("--port", type=int, help="port (default: TULIFO_API_PORT)")
    api.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes (default 1; one per CPU core is a good start in production)",
    )
    api.add_argument(
        "--proxy-headers",
        action="store_true",
        help="trust X-Forwarded-For/-Proto from --forwarded-allow-ips (off: clients could "
        "choose the IP that rate limits count)",
    )
    api.add_argument(
        "--forwarded-allow-ips",
        help="comma-separated proxy addresses trusted with --proxy-headers (default 127.0.0.1)",
    )
    api.set_defaults(handler=_api)

    worker = sub.add_parser(
        "worker",
        help="run the Faust worker (all agents)",
        description="Run the Faust worker with every agent until SIGTERM/SIGINT.",
    )
    worker.set_defaults(handler=_worker)

    relay = sub.add_parser(
        "relay",
        help="run the outbox relay (PostgreSQL outbox -> Kafka)",
        description="Publish the transactional outbox to Kafka until SIGTERM/SIGINT.",
    )
    relay.set_defaults(handler=_relay)

    migrate = sub.add_parser(
        "migrate",
        help="apply pending SQL migrations",
        description="Create the database in TULIFO_DATABASE_URL if missing, apply pending "
        "migrations and print each one applied.",
    )
    migrate.set_defaults(handler=_migrate)

    replay = sub.add_parser(
        "replay",
        help="rebuild topics, tables and read models from the outbox (the event store)",
        description="Publish the whole outbox to a new generation of topics and fold it with a "
        "fresh Faust app id into empty read models, then stop (bridges/replay.py). Nothing is "
        "emailed or notified again: only the read-model agents run.",
    )
    stamp = time.strftime("%Y%m%d%H%M%S")
    replay.add_argument(
        "--database-url",
        help="where to rebuild the analytics read models (default: the configured database, "
        "which needs --in-place)",
    )
    replay.add_argument(
        "--topic-prefix", help=f"the new topics' prefix (default: <TULIFO_TOPIC_PREFIX>-r{stamp})"
    )
    replay.add_argument(
        "--app-id", help=f"the new Faust app id (default: <TULIFO_FAUST_APP_ID>-r{stamp})"
    )
    replay.add_argument(
        "--in-place",
        action="store_true",
        help="empty and rebuild the configured database's read models (stop live workers first)",
    )
    replay.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (600)")
    replay.set_defaults(handler=_replay, stamp=stamp)

    admin = sub.add_parser(
        "create-admin",
        help="create an admin account (or promote an existing one)",
        description="Create an admin account, or promote the account with this email. The "
        "password is read from a prompt, or from stdin with --password-stdin; never from argv, "
        "where other users and shell history would see it.",
    )
    admin.add_argument("--email", required=True)
    admin.add_argument("--name", required=True)
    admin.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin",
    )
    admin.set_defaults(handler=_create_admin)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except ValidationError as exc:
        print(f"tulifo: invalid settings: {exc}", file=sys.stderr)
        return EXIT_USAGE
    handler: Callable[[argparse.Namespace, Settings], int] = args.handler
    try:
        return handler(args, settings)
    except (CommandError, LocalServiceError) as exc:
        print(f"tulifo {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
