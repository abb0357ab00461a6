"""Peer `faust-table per-event`: a plain Faust agent keeping a per-key sum in a table.

    python faust_table.py BOOTSTRAP TOPIC APP_ID EVENTS [--partitions 4] [--timeout 120]

Reads EVENTS pre-produced JSON events (`worker_id`, `rating` and ~150 bytes of other fields)
from TOPIC and does `totals[worker_id] += rating` for each, one event at a time: the way a Faust
table is written by the book. Faust's defaults throughout (memory store, at-least-once, its
producer and consumer settings); only what a lone bench worker on Tansu needs differs: no web
server, no standby replicas, and a 10 s session timeout, which only shortens the group join.

Prints `RESULT {"events", "seconds", "cpu_s"}` timed from the first event to the EVENTS-th, then
exits at once (a graceful Faust shutdown takes seconds and measures nothing). Gives up with
status 3 after --timeout seconds. PEER_LOGLEVEL=info in the environment shows the start-up.
Stands alone on purpose: it imports nothing of the project.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

import faust


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("app_id")
    parser.add_argument("events", type=int)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=120.0)
    return parser.parse_args()


ARGS = parse_args()

app = faust.App(
    ARGS.app_id,
    broker=f"kafka://{ARGS.bootstrap}",
    store="memory://",
    topic_partitions=ARGS.partitions,
    # One worker beside other processes: no port to claim, nobody to keep a standby for.
    web_enabled=False,
    table_standby_replicas=0,
    # Tansu holds a first JoinGroup for half the session timeout: 30 s at Faust's default 60 s.
    broker_session_timeout=10,
)


class Rating(faust.Record, serializer="json"):
    worker_id: str
    rating: int


ratings = app.topic(ARGS.topic, value_type=Rating, partitions=ARGS.partitions)
totals = app.Table("totals", default=int, partitions=ARGS.partitions)

# Timed from the first event, so the worker's start-up and group join are not counted.
progress = {"events": 0, "t0": 0.0, "cpu0": 0.0}


def _cpu_s() -> float:
    times = os.times()
    return times.user + times.system


def _finish() -> None:
    seconds = time.perf_counter() - progress["t0"]
    result = {
        "events": progress["events"],
        "seconds": seconds,
        "cpu_s": _cpu_s() - progress["cpu0"],
    }
    # Straight to fd 1: the worker has replaced sys.stdout with a logger that prefixes lines.
    # On a line of its own, whatever partial line the worker's spinner left.
    os.write(1, f"\nRESULT {json.dumps(result)}\n".encode())
    os._exit(0)


@app.agent(ratings)
async def add_ratings(stream: faust.StreamT[Rating]) -> None:
    async for rating in stream:
        if not progress["events"]:
            progress["t0"], progress["cpu0"] = time.perf_counter(), _cpu_s()
        totals[rating.worker_id] += rating.rating
        progress["events"] += 1
        if progress["events"] >= ARGS.events:
            _finish()


def _give_up() -> None:
    done = f"{progress['events']:,} of {ARGS.events:,} events"
    os.write(1, f"\ngave up after {ARGS.timeout:.0f} s: {done}\n".encode())
    os._exit(3)


if __name__ == "__main__":
    # The bound holds whatever Faust is doing, even stuck before its event loop runs.
    # Daemon: a worker that crashes exits with its own status, not at the deadline.
    watchdog = threading.Timer(ARGS.timeout, _give_up)
    watchdog.daemon = True
    watchdog.start()
    sys.argv = [sys.argv[0], "worker", "--loglevel", os.environ.get("PEER_LOGLEVEL", "warn")]
    app.main()
