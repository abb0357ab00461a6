"""The `tulifo` command: run the system locally, or one of its processes.

    tulifo dev            local services + migrations + API, worker and relay, until Ctrl-C
    tulifo services       local services only; prints `export TULIFO_...` lines
    tulifo api|worker|relay|bridge|jobs
    tulifo migrate
    tulifo replay         rebuild topics, tables and read models from the outbox
    tulifo reindex        rebuild the search indices from PostgreSQL
    tulifo create-admin --email ... --name ...

`dev` and `services` are in infrastructure/local/commands.py; this module holds the parser,
`main` and the commands that run one thing each.

Settings come from `TULIFO_*` environment variables (infrastructure/settings.py).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import ValidationError

from infrastructure.command import CommandError
from infrastructure.command import configure_command_logging as _logging
from infrastructure.local import LocalServiceError
from infrastructure.local.commands import add_local_commands
from infrastructure.settings import Settings, get_settings

EXIT_USAGE = 2


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


def _bridge(args: argparse.Namespace, settings: Settings) -> int:
    _logging(settings, "bridge")
    from bridges.rabbitmq import BridgeRefused, main

    try:
        main(settings)
    except BridgeRefused as exc:
        raise CommandError(str(exc)) from exc
    return 0


def _jobs(args: argparse.Namespace, settings: Settings) -> int:
    _logging(settings, "jobs")
    from bridges.jobs import main

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
    if args.reindex and settings.elasticsearch_url is None:
        raise CommandError("--reindex needs TULIFO_ELASTICSEARCH_URL")
    target = settings.model_copy(
        update={
            "database_url": args.database_url or settings.database_url,
            "mongo_database": args.mongo_database or settings.mongo_database,
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
        f"{report.topic_prefix}.* (app id {report.app_id}); client_data rebuilt in MongoDB "
        f"database {report.mongo_database}"
    )
    if args.reindex:
        _rebuild_search(settings, "all")
    return 0


def _reindex(args: argparse.Namespace, settings: Settings) -> int:
    _logging(settings, "reindex")
    _rebuild_search(settings, args.index)
    return 0


def _rebuild_search(settings: Settings, index: str) -> None:
    from bridges.reindex import ReindexRefused, reindex
    from tables.search import INDICES

    aliases = tuple(INDICES) if index == "all" else (index,)
    try:
        asyncio.run(reindex(settings, aliases=aliases, progress=print))
    except ReindexRefused as exc:
        raise CommandError(str(exc)) from exc


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

    add_local_commands(sub)

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

    bridge = sub.add_parser(
        "bridge",
        help="run the RabbitMQ bridge (Kafka -> the tulifo.events exchange)",
        description="Republish every domain event from Kafka to the RabbitMQ topic exchange "
        "TULIFO_RABBITMQ_EXCHANGE (routing key = event type), until SIGTERM/SIGINT. Refuses to "
        "start when TULIFO_RABBITMQ_URL is empty.",
    )
    bridge.set_defaults(handler=_bridge)

    jobs = sub.add_parser(
        "jobs",
        help="run scheduled jobs (MongoDB worker_queue: auto-release, reconciliation, refunds)",
        description="Claim and run due jobs from the MongoDB collection worker_queue until "
        "SIGTERM/SIGINT; any number may run side by side (bridges/jobs.py).",
    )
    jobs.set_defaults(handler=_jobs)

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
        "fresh Faust app id into empty read models (the PostgreSQL analytics tables and the "
        "MongoDB client_data collection), then stop (bridges/replay.py). Nothing is emailed or "
        "notified again: only the read-model agents run.",
    )
    stamp = time.strftime("%Y%m%d%H%M%S")
    replay.add_argument(
        "--database-url",
        help="where to rebuild the analytics read models (default: the configured database, "
        "which needs --in-place)",
    )
    replay.add_argument(
        "--mongo-database",
        help="the MongoDB database, on the configured server, to rebuild client_data in "
        "(default: the configured TULIFO_MONGO_DATABASE, which needs --in-place)",
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
        help="empty and rebuild the configured databases' read models, PostgreSQL's and "
        "MongoDB's, wherever no other target is given (stop live workers first)",
    )
    replay.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (600)")
    replay.add_argument(
        "--reindex",
        action="store_true",
        help="then rebuild the configured search indices, as `tulifo reindex` does. They are "
        "read from the configured database's write side and ratings, not folded from the "
        "topics, so a replay alone leaves them as they are; with --in-place this makes the "
        "replay a rebuild of everything",
    )
    replay.set_defaults(handler=_replay, stamp=stamp)

    reindex = sub.add_parser(
        "reindex",
        help="rebuild the search indices from PostgreSQL",
        description="Build a new Elasticsearch index for each chosen alias (under "
        "TULIFO_SEARCH_INDEX_PREFIX) from the documents in TULIFO_DATABASE_URL, swap the alias "
        "onto it atomically, catch up what changed meanwhile and delete the previous index "
        "(bridges/reindex.py). Search keeps answering throughout; a missing alias is created. "
        "Needs TULIFO_ELASTICSEARCH_URL.",
    )
    reindex.add_argument(
        "--index",
        choices=("workers", "projects", "all"),
        default="all",
        help="which index to rebuild (default: all)",
    )
    reindex.set_defaults(handler=_reindex)

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
