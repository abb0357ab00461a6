"""An open-loop load generator: request i is due at start + i/rate whether or not earlier ones
have answered, and its latency is counted from when it was due, so a slow server cannot hide
its queueing by slowing the client down (no coordinated omission)."""

from __future__ import annotations

import asyncio
import gc
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bench.report import percentile

# Requests in flight beyond this are not sent but counted as errors: the run stays bounded even
# against a server that stopped answering.
MAX_IN_FLIGHT = 1_000


@dataclass
class LoadResult:
    offered_rate: float
    scheduled: int
    latencies_s: list[float] = field(default_factory=list)
    # (seconds into the run the request was due, its latency): where in the run the slow ones were
    timeline: list[tuple[float, float]] = field(default_factory=list)
    send_lags_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> int:
        return len(self.latencies_s)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def achieved_rate(self) -> float:
        """Successful responses per second, from the first request due to the last answer."""
        return self.ok / self.elapsed_s if self.elapsed_s else 0.0

    def latency_ms(self, pct: float) -> float:
        return percentile(sorted(self.latencies_s), pct) * 1000

    @classmethod
    def joined(cls, parts: list[LoadResult]) -> LoadResult:
        """Runs one after another as one: their requests, errors and time together (each part's
        timeline shifted to follow the previous part's)."""
        joined = cls(offered_rate=parts[0].offered_rate, scheduled=0)
        for part in parts:
            offset = joined.elapsed_s
            joined.scheduled += part.scheduled
            joined.latencies_s += part.latencies_s
            joined.timeline += [(due + offset, latency) for due, latency in part.timeline]
            joined.send_lags_s += part.send_lags_s
            joined.errors += part.errors
            joined.elapsed_s += part.elapsed_s
        return joined

    def worst_by_second_ms(self) -> list[float]:
        """The slowest latency among the requests due in each second of the run."""
        worst: dict[int, float] = {}
        for due, latency in self.timeline:
            second = int(due)
            worst[second] = max(worst.get(second, 0.0), latency)
        return [round(worst.get(s, 0.0) * 1000, 1) for s in range(max(worst, default=-1) + 1)]

    def send_lag_ms(self, pct: float) -> float:
        return percentile(sorted(self.send_lags_s), pct) * 1000


async def open_loop(
    send: Callable[[int], Awaitable[bool]],
    *,
    rate: float,
    duration_s: float,
    drain_timeout_s: float,
) -> LoadResult:
    """Call `send(i)` (True = success) at `rate` per second for `duration_s`, then wait for
    the stragglers at most `drain_timeout_s`."""
    loop = asyncio.get_running_loop()
    result = LoadResult(offered_rate=rate, scheduled=int(rate * duration_s))
    in_flight: set[asyncio.Task[None]] = set()
    last_answer = 0.0

    async def one(i: int, due: float) -> None:
        nonlocal last_answer
        result.send_lags_s.append(loop.time() - due)
        try:
            succeeded = await send(i)
        except Exception as exc:  # a timeout or a refused connection is a failed request
            result.errors[type(exc).__name__] += 1
            return
        answered = loop.time()
        last_answer = max(last_answer, answered)
        if succeeded:
            result.latencies_s.append(answered - due)
            result.timeline.append((due - start, answered - due))
        else:
            result.errors["unexpected status"] += 1

    # A full collection of the client's heap (every module the bench imported) took 22-30 ms,
    # which showed up as the run's worst second. Frozen objects are not scanned again.
    gc.collect()
    gc.freeze()
    try:
        start = loop.time() + 0.05
        for i in range(result.scheduled):
            due = start + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(in_flight) >= MAX_IN_FLIGHT:
                result.errors["not sent: too many in flight"] += 1
                continue
            task = asyncio.create_task(one(i, due))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            _, pending = await asyncio.wait(set(in_flight), timeout=drain_timeout_s)
            for task in pending:
                task.cancel()
            if pending:
                result.errors["no answer before the drain timeout"] += len(pending)
    finally:
        gc.unfreeze()
    result.elapsed_s = max(last_answer - start, 0.0)
    return result
