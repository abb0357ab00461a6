"""`python -m bench [--quick] [--only NAME ...]`: run the benches, print the table, save JSON."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import api_write, kafka_ceiling, relay
from bench.clients import CLIENT_KINDS
from bench.environment import environment
from bench.load import LoadResult
from bench.report import Row, render_table, write_json

BENCHES = ("kafka-ceiling", "relay", "api-write", "api-write-storm")
# Both API benches run against one server process, the storm window after the calm one.
API_BENCHES = {"api-write", "api-write-storm"}


@dataclass(frozen=True)
class Sizes:
    ceiling_messages: int
    relay_events: int
    api: api_write.Plan


FULL = Sizes(
    ceiling_messages=100_000,
    relay_events=50_000,
    api=api_write.Plan(rate=300, duration_s=10, warmup_s=2, users=100),
)
QUICK = Sizes(
    ceiling_messages=20_000,
    relay_events=10_000,
    api=api_write.Plan(rate=300, duration_s=3, warmup_s=1, users=50),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="smaller counts, 3 s of API load per window"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=BENCHES,
        metavar="NAME",
        help=f"run only this bench (repeatable): {', '.join(BENCHES)}",
    )
    parser.add_argument(
        "--client",
        choices=CLIENT_KINDS,
        default="aiohttp",
        help="HTTP client of api-write (httpx costs ~3x more client CPU; bench/clients.py)",
    )
    return parser.parse_args(argv)


async def run(selected: list[str], sizes: Sizes, workdir: Path) -> tuple[list[Row], dict[str, Any]]:
    rows: list[Row] = []
    details: dict[str, Any] = {}
    needs_kafka = bool({"kafka-ceiling", "relay"} & set(selected))
    needs_database = bool(({"relay"} | API_BENCHES) & set(selected))
    async with environment(workdir=workdir, database=needs_database, kafka=needs_kafka) as env:
        settings = env.settings()
        produce_ceiling = None
        if "kafka-ceiling" in selected:
            _say("kafka-ceiling: producing and consuming", sizes.ceiling_messages, "messages")
            ceiling = await kafka_ceiling.measure(settings, messages=sizes.ceiling_messages)
            produce_ceiling = ceiling.produce_rate
            rows += ceiling.rows()
            details["kafka-ceiling"] = dataclasses.asdict(ceiling)
        if "relay" in selected:
            _say("relay: publishing", sizes.relay_events, "outbox rows")
            relayed = await relay.measure(settings, events=sizes.relay_events)
            rows += relayed.rows(produce_ceiling)
            details["relay"] = dataclasses.asdict(relayed)
        calm, storm = "api-write" in selected, "api-write-storm" in selected
        if calm or storm:
            plan = sizes.api
            during = f", then during {plan.storm.login_rate:.0f} logins/s" if storm else ""
            _say(
                f"api-write: {plan.rate:.0f} req/s for {plan.duration_s:.0f} s{during}"
                f" with {plan.client},",
                plan.users,
                "users",
            )
            written = await api_write.measure(env, plan, calm=calm, storm=storm)
            rows += written.rows()
            for name, window in (("api-write", written.calm), ("api-write-storm", written.stormy)):
                if window is not None:
                    details[name] = _api_details(written, window)
    return rows, details


def _api_details(result: api_write.ApiWriteResult, window: api_write.WriteWindow) -> dict[str, Any]:
    cpu = window.cpu
    details = {
        "plan": dataclasses.asdict(result.plan),
        **_load_details(window.load),
        "cpu_s": {
            "server": cpu.server_s,
            "server_event_loop": cpu.server_loop_s,
            "client": cpu.client_s,
            "machine": cpu.machine_s,
            "wall": cpu.wall_s,
            "others": cpu.others_s,
        },
        "outbox_events": result.outbox_events,
        "writes_ok_incl_warmup": result.writes_sent_ok,
    }
    if window.storm is not None:
        details["logins"] = {
            "addresses": window.storm.addresses,
            "statuses": dict(window.storm.statuses),
            **_load_details(window.storm.load),
        }
    return details


def _load_details(load: LoadResult) -> dict[str, Any]:
    return {
        "scheduled": load.scheduled,
        "ok": load.ok,
        "errors": dict(load.errors),
        "elapsed_s": load.elapsed_s,
        "latency_ms": {f"p{p}": load.latency_ms(p) for p in (50, 90, 95, 99, 99.9, 100)},
        "worst_latency_ms_by_second": load.worst_by_second_ms(),
        "send_lag_ms": {f"p{p}": load.send_lag_ms(p) for p in (50, 99, 100)},
    }


def _say(*parts: object) -> None:
    print("..", *(f"{p:,}" if isinstance(p, int) else p for p in parts), flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    selected = [name for name in BENCHES if not args.only or name in args.only]
    sizes = QUICK if args.quick else FULL
    sizes = dataclasses.replace(sizes, api=dataclasses.replace(sizes.api, client=args.client))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    started, clock = datetime.now().astimezone(), time.monotonic()
    # Others' work on a shared machine moves every number: the load says how busy it was.
    load_before = os.getloadavg()[0]
    if load_before > 1:
        print(f"!! the machine is busy (load average {load_before:.1f}): expect slower numbers")
    with tempfile.TemporaryDirectory(prefix="tulifo-bench-") as workdir:
        rows, details = asyncio.run(run(selected, sizes, Path(workdir)))
    wall_s = time.monotonic() - clock
    print()
    print(render_table(rows))
    meta = {
        "quick": args.quick,
        "benches": selected,
        "wall_s": round(wall_s, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1m_before": round(load_before, 2),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "sizes": dataclasses.asdict(sizes),
    }
    path = write_json(rows, started=started, meta=meta, details=details)
    shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
    print(f"\n{len(rows)} rows in {wall_s:.0f} s; saved {shown}")
    return 1 if any(r.verdict == "misses" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
