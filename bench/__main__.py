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

from bench import api_write, kafka_ceiling, matching, relay, search, stream_e2e, stream_peers
from bench.clients import CLIENT_KINDS
from bench.environment import environment, machine_name
from bench.load import LoadResult
from bench.report import Row, render_table, write_json

# In the order they run: `stream` after the peers, whose rates its notes are given against.
BENCHES = (
    "kafka-ceiling",
    "faust-table",
    "quix",
    "stream",
    "relay",
    "api-write",
    "api-write-storm",
    "match-recompute",
    "match-api",
    "search",
)
# The stream-processing peers share one topic of pre-produced events.
PEER_BENCHES = {"faust-table", "quix"}
# Both API benches run against one server process, the storm window after the calm one.
API_BENCHES = {"api-write", "api-write-storm"}


@dataclass(frozen=True)
class Sizes:
    ceiling_messages: int
    # Quix reads ~20x faster than the Faust baseline: more events keep its timed span ~1-3 s.
    faust_events: int
    quix_events: int
    relay_events: int
    stream: stream_e2e.Plan
    api: api_write.Plan
    match_recompute: matching.RecomputePlan
    match_api: matching.ApiPlan
    search: search.Plan


FULL = Sizes(
    ceiling_messages=100_000,
    faust_events=30_000,
    quix_events=200_000,
    relay_events=50_000,
    stream=stream_e2e.Plan(e2e_events=50_000, stage_events=50_000, lag_rate=1_000, lag_seconds=10),
    api=api_write.Plan(rate=300, duration_s=10, warmup_s=2, users=100),
    match_recompute=matching.RecomputePlan(events=500, naive_runs=10),
    match_api=matching.ApiPlan(rate=200, duration_s=10, warmup_s=2),
    search=search.Plan(rate=2, duration_s=15, warmup_s=2),
)
QUICK = Sizes(
    ceiling_messages=20_000,
    faust_events=10_000,
    quix_events=50_000,
    relay_events=10_000,
    # The stage keeps 50,000 events: with packs 15,000 are two or three fold batches, and the
    # stage is timed from the end of the first (bench/README.md), which left too little to time.
    stream=stream_e2e.Plan(e2e_events=15_000, stage_events=50_000, lag_rate=1_000, lag_seconds=5),
    api=api_write.Plan(rate=300, duration_s=3, warmup_s=1, users=50),
    match_recompute=matching.RecomputePlan(events=200, naive_runs=5),
    match_api=matching.ApiPlan(rate=200, duration_s=3, warmup_s=2),
    search=search.Plan(rate=2, duration_s=6, warmup_s=1),
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
    # `stream` makes a database of its own (bench/stream_e2e.py says why).
    needs_kafka = bool(({"kafka-ceiling", "relay", "stream"} | PEER_BENCHES) & set(selected))
    # `match-api` and `search` make databases of their own (bench/matching.py, bench/search.py).
    needs_database = bool(({"relay"} | API_BENCHES) & set(selected))
    # A sign-in records its session's device in MongoDB (api/sessions): the API benches register
    # and log in, so they get the document store the API writes to.
    needs_mongo = bool(({"stream", "match-api", "search"} | API_BENCHES) & set(selected))
    async with environment(
        workdir=workdir, database=needs_database, kafka=needs_kafka, mongo=needs_mongo
    ) as env:
        settings = env.settings()
        produce_ceiling = consume_ceiling = None
        faust_rate = quix_rate = None
        if "kafka-ceiling" in selected:
            _say("kafka-ceiling: producing and consuming", sizes.ceiling_messages, "messages")
            ceiling = await kafka_ceiling.measure(settings, messages=sizes.ceiling_messages)
            produce_ceiling, consume_ceiling = ceiling.produce_rate, ceiling.consume_rate
            rows += ceiling.rows()
            details["kafka-ceiling"] = dataclasses.asdict(ceiling)
        if PEER_BENCHES & set(selected):
            faust_events = sizes.faust_events if "faust-table" in selected else None
            quix_events = sizes.quix_events if "quix" in selected else None
            counts = ", ".join(
                f"{name} {n:,}"
                for name, n in (("faust-table", faust_events), ("quix", quix_events))
                if n
            )
            _say(f"stream peers, each in a child process: {counts} events")
            peers = await stream_peers.measure(
                settings.kafka_bootstrap,
                topic_prefix=settings.topic_prefix,
                workdir=workdir / "peers",
                faust_events=faust_events,
                quix_events=quix_events,
            )
            rows += peers.rows(consume_ceiling)
            details["stream-peers"] = dataclasses.asdict(peers)
            faust_rate = peers.faust.rate if peers.faust is not None else None
            quix_rate = peers.quix.rate if peers.quix is not None else None
        if "stream" in selected:
            plan = sizes.stream
            _say(
                f"stream: end-to-end {plan.e2e_events:,} events, lag at {plan.lag_rate:,.0f}/s for"
                f" {plan.lag_seconds:.0f} s, stateful stage",
                plan.stage_events,
                "events",
            )
            streamed = await stream_e2e.measure(
                settings, run_id=env.run_id, workdir=workdir, plan=plan
            )
            rows += streamed.rows(faust=faust_rate, quix=quix_rate, consume_ceiling=consume_ceiling)
            details["stream"] = stream_e2e.details(streamed)
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
        if "match-recompute" in selected:
            recompute = sizes.match_recompute
            _say(
                f"match-recompute: {recompute.workers:,} workers, {recompute.projects:,} projects,",
                recompute.events,
                "updates of each kind",
            )
            recomputed = matching.measure_recompute(recompute)
            rows += recomputed.rows()
            details["match-recompute"] = dataclasses.asdict(recomputed)
        if "match-api" in selected:
            plan = sizes.match_api
            _say(
                f"match-api: {plan.workers:,} workers, {plan.projects:,} projects, then"
                f" {plan.rate:.0f} req/s for {plan.duration_s:.0f} s"
            )
            matched = await matching.measure_api(env, plan)
            rows += matched.rows()
            details["match-api"] = {
                "plan": dataclasses.asdict(plan),
                "rank_s": matched.rank_s,
                "stored": matched.stored,
                **_load_details(matched.load),
                "health": _load_details(matched.health),
                "cpu_s": dataclasses.asdict(matched.cpu),
            }
        if "search" in selected:
            plan = sizes.search
            _say(
                f"search: noida-db, {plan.workers:,} workers, {plan.projects:,} projects,"
                f" {plan.rate:g} req/s for {plan.duration_s:.0f} s, direct then through the API"
            )
            searched = await search.measure(env, plan)
            rows += searched.rows()
            details["search"] = {
                "plan": dataclasses.asdict(plan),
                "documents": searched.documents,
                "index_s": searched.index_s,
                "api": _load_details(searched.api),
                "direct": _load_details(searched.direct),
                "cpu_s": dataclasses.asdict(searched.cpu),
            }
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
    machine = machine_name()
    print(
        f"\nmachine: {machine}, Python {platform.python_version()}, load average {load_before:.1f}"
    )
    print(render_table(rows))
    meta = {
        "quick": args.quick,
        "benches": selected,
        "wall_s": round(wall_s, 1),
        "machine": {
            "cpu_model": machine,
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
