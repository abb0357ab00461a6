"""Peer `quix per-key sum`: a Quix Streams app keeping a per-key sum in its RocksDB state.

    python quix_sum.py BOOTSTRAP TOPIC GROUP EVENTS STATE_DIR [--timeout 120]

Reads EVENTS pre-produced JSON events (`worker_id`, `rating` and ~150 bytes of other fields)
from TOPIC and adds each rating to the sum kept under the message's key (the worker) in Quix's
state: RocksDB with its changelog topic. Quix's defaults throughout (at-least-once, its commit
interval, its consumer and producer settings), except a 10 s session timeout, which only
shortens the group join on Tansu, and a quieter log level.

Prints `RESULT {"events", "seconds", "cpu_s"}` timed from the first event to the EVENTS-th, then
exits at once. Gives up with status 3 after --timeout seconds. PEER_LOGLEVEL=INFO in the
environment shows the start-up. Stands alone on purpose: it imports nothing of the project.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from typing import Any

try:
    from quixstreams import Application, State
except ImportError as error:  # an optional extra: say so plainly, not with a traceback
    print(
        f"quixstreams is not installed ({error}): `make bench` puts it in .venv-quix "
        "(bench/peers/requirements-quix.txt)",
        flush=True,
    )
    raise SystemExit(2) from None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("group")
    parser.add_argument("events", type=int)
    parser.add_argument("state_dir")
    parser.add_argument("--timeout", type=float, default=120.0)
    return parser.parse_args()


ARGS = parse_args()
SESSION_TIMEOUT_MS = 10_000
# Timed from the first event, so start-up and the group join are not counted.
progress = {"events": 0, "t0": 0.0, "cpu0": 0.0}


def _cpu_s() -> float:
    times = os.times()
    return times.user + times.system


def add_rating(value: dict[str, Any], state: State) -> None:
    if not progress["events"]:
        progress["t0"], progress["cpu0"] = time.perf_counter(), _cpu_s()
    state.set("sum", state.get("sum", 0) + value["rating"])
    progress["events"] += 1
    if progress["events"] >= ARGS.events:
        result = {
            "events": progress["events"],
            "seconds": time.perf_counter() - progress["t0"],
            "cpu_s": _cpu_s() - progress["cpu0"],
        }
        os.write(1, f"\nRESULT {json.dumps(result)}\n".encode())
        os._exit(0)  # a clean stop commits and closes RocksDB: seconds that measure nothing


def _give_up() -> None:
    done = f"{progress['events']:,} of {ARGS.events:,} events"
    os.write(1, f"\ngave up after {ARGS.timeout:.0f} s: {done}\n".encode())
    os._exit(3)


def main() -> None:
    app = Application(
        broker_address=ARGS.bootstrap,
        consumer_group=ARGS.group,
        auto_offset_reset="earliest",
        state_dir=ARGS.state_dir,
        loglevel=os.environ.get("PEER_LOGLEVEL", "WARNING"),
        # Tansu holds a first JoinGroup for half the session timeout: 22 s at librdkafka's 45 s.
        consumer_extra_config={"session.timeout.ms": SESSION_TIMEOUT_MS},
    )
    ratings = app.dataframe(app.topic(ARGS.topic, value_deserializer="json"))
    ratings.update(add_rating, stateful=True)
    # Daemon: an app that crashes exits with its own status, not at the deadline.
    watchdog = threading.Timer(ARGS.timeout, _give_up)
    watchdog.daemon = True
    watchdog.start()
    app.run()


if __name__ == "__main__":
    main()
