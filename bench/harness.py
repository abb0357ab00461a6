"""Building blocks for benches that measure a consumer in a process of its own.

`pre_produce()` puts N keyed events on a fresh topic before anything is timed; `run_child()` runs
a child process until it prints its `RESULT` line, or gives up after a timeout. The stream peers
(`stream_peers.py`) use both; so can any bench whose consumer must own its CPU, like the
end-to-end row through the project's agents.

The child's side of the contract: print one line `RESULT {json}` (flushed) and exit; the JSON
holds at least `events` and `seconds`, the timed part only (from the first event to the last), and
`cpu_s`, the child's own CPU time over the same span. Anything else it prints is kept in a log
file; the last lines of it are the reason given when no RESULT comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

PARTITIONS = 4
KEYS = 1_000
VALUE_BYTES = 200
# Spelled out because Tansu's DescribeConfigs leaves out what is at the broker's default, and
# Quix Streams derives its changelog topics from the source topic's retention (KeyError without).
TOPIC_CONFIGS = {"retention.ms": "604800000", "retention.bytes": "-1", "cleanup.policy": "delete"}
RESULT_PREFIX = "RESULT "
# How long a killed child gets to be reaped before the bench goes on without it.
KILL_GRACE_S = 5.0
# Terminal control sequences (Faust's spinner hides and shows the cursor even into a pipe).
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

Event = Callable[[int], tuple[bytes, bytes]]


def rating_event(i: int) -> tuple[bytes, bytes]:
    """Event i: a worker rated 1-5, keyed by the worker (KEYS workers in turn).

    ~VALUE_BYTES of JSON, the size of kafka-ceiling's values, so that a consumer's rate over the
    consume ceiling compares like with like.
    """
    worker = f"w{i % KEYS}"
    body = {
        "event_id": str(uuid.uuid4()),
        "type": "review.rated",
        "worker_id": worker,
        "rating": i % 5 + 1,
        "pad": "",
    }
    short = len(json.dumps(body, separators=(",", ":")))
    body["pad"] = "x" * max(0, VALUE_BYTES - short)
    return worker.encode(), json.dumps(body, separators=(",", ":")).encode()


async def create_topic(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> None:
    """Create `topic` with `partitions` partitions; one that already exists is left as it is.

    Created up front because broker auto-creation picks its own partition count, and the
    partition count decides how a consumer's work splits.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics(
            [NewTopic(topic, partitions, 1, topic_configs=TOPIC_CONFIGS)]
        )
    except TopicAlreadyExistsError:
        return
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    # The broker answers per topic; anything but "created" or "already there" would leave the
    # events to auto-creation, with its own partition count.
    for name, code, *_ in response.topic_errors:
        if code not in (0, TopicAlreadyExistsError.errno):
            raise RuntimeError(f"creating topic {name} failed with Kafka error {code}")


async def pre_produce(
    bootstrap: str,
    topic: str,
    count: int,
    *,
    partitions: int = PARTITIONS,
    event: Event = rating_event,
    deadline_s: float = 120.0,
) -> float:
    """Create `topic` and put `event(0)` .. `event(count - 1)` on it, every ack awaited.

    Returns the seconds the sends took (for scale only: this is set-up, not a measurement).
    Keyed by `event`'s key, so each key's events stay in order on one partition.
    """
    async with asyncio.timeout(deadline_s):
        await create_topic(bootstrap, topic, partitions)
    # Tansu refuses InitProducerId, hence no idempotence; big batches because nothing waits on
    # the latency of any single event here.
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=False,
        linger_ms=5,
        max_batch_size=256 * 1024,
    )
    await producer.start()
    try:
        async with asyncio.timeout(deadline_s):
            started = time.perf_counter()
            acks = []
            for i in range(count):
                key, value = event(i)
                acks.append(await producer.send(topic, value, key=key))
            await asyncio.gather(*acks)
            return time.perf_counter() - started
    finally:
        await producer.stop()


class ChildFailed(RuntimeError):
    """The child exited, or ran out of time, without a RESULT line; the message says why."""

    def __init__(self, message: str, output_tail: list[str]) -> None:
        super().__init__(message)
        self.output_tail = output_tail


@dataclass(frozen=True)
class ChildResult:
    """A child's RESULT line and how long the whole child took, start-up included."""

    result: dict[str, Any]
    wall_s: float
    log_path: Path
    output_tail: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Events per second over the child's own timed span."""
        return float(self.result["events"]) / float(self.result["seconds"])

    @property
    def cores(self) -> float:
        """The child's CPU over its timed span, in cores."""
        return float(self.result.get("cpu_s", float("nan"))) / float(self.result["seconds"])


async def run_child(
    argv: Sequence[str],
    *,
    timeout_s: float,
    log_path: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> ChildResult:
    """Run `argv` until it prints `RESULT {json}`; kill it after `timeout_s` at the latest.

    stdout and stderr go to `log_path`. The child is killed (its whole session, which this
    function started) as soon as its RESULT is in, so a child that stops slowly costs nothing.
    Raises ChildFailed with the last lines it printed when it exits or times out without one.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        # A session of its own, so a child's own children go with it.
        start_new_session=True,
        # Faust's start-up tables are wide lines; asyncio's default would stop at 64 KiB.
        limit=1 << 20,
    )
    tail: deque[str] = deque(maxlen=20)
    result: dict[str, Any] | None = None
    try:
        with log_path.open("w") as log:
            async with asyncio.timeout(timeout_s):
                result = await _read_until_result(proc, log, tail)
        wall_s = time.perf_counter() - started
    except TimeoutError:
        raise ChildFailed(
            f"no RESULT within {timeout_s:.0f} s{_last_words(tail)}", list(tail)
        ) from None
    finally:
        await _end(proc)
    if result is None:
        raise ChildFailed(
            f"exited with status {proc.returncode} and no RESULT{_last_words(tail)}", list(tail)
        )
    return ChildResult(result, wall_s, log_path, list(tail))


async def _read_until_result(
    proc: asyncio.subprocess.Process, log: Any, tail: deque[str]
) -> dict[str, Any] | None:
    assert proc.stdout is not None
    while line := await proc.stdout.readline():
        text = _ANSI.sub("", line.decode(errors="replace")).rstrip()
        log.write(text + "\n")
        if text.startswith(RESULT_PREFIX):
            log.flush()
            try:
                return dict(json.loads(text.removeprefix(RESULT_PREFIX)))
            except ValueError:
                raise ChildFailed(f"unreadable RESULT line: {text[:200]}", list(tail)) from None
        if text:
            tail.append(text)
    await proc.wait()
    return None


async def _end(proc: asyncio.subprocess.Process) -> None:
    """Kill the child's session (its own: start_new_session), then reap the child.

    Also when the child has exited: whatever it started in its session goes with it.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(KILL_GRACE_S):
            await proc.wait()


def _last_words(tail: deque[str]) -> str:
    return f": {tail[-1][:200]}" if tail else ""


def python_child(script: Path, *args: object, python: str | None = None) -> list[str]:
    """argv running `script` with `python` (this interpreter by default), unbuffered, so lines
    arrive as printed."""
    return [python or sys.executable, "-u", str(script), *(str(a) for a in args)]
