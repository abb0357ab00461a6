"""`stream`: the project's own pipeline, outbox -> relay -> Kafka -> Faust worker -> PostgreSQL.

One worker process running only the read-model folds (`python -m streams.worker` with
`TULIFO_WORKER_AGENTS=escrow,ratings`, configured by `TULIFO_*` alone, as production runs it),
fed with gig and review events as the write side commits them (`random_mix` of
tests/streams/gig_factories.py: ~3.2 events per gig, each gig's in order, gigs interleaved, a
review per released gig). Three measurements:

- `stream end-to-end`: N events committed to the outbox (not timed), a worker started and warmed
  up on a small batch first (group joined, read-model connections open), then the clock runs
  from the relay's start until the read models hold every event. The relay runs in this process,
  the worker in its own: the whole pipeline on the machine's cores at once.
- `stream stateful stage`: M events published to the topics first (the relay run to the end, not
  timed), then a fresh worker (new consumer group) folds them alone: its rate from the end of its
  first batch to the end of its last, read from its own fold counter. Like the peers, which time
  themselves from their first event to their N-th; the like-for-like comparison with them.
- `stream lag p50 / p99`, `achieved rate`: the relay running, the warmed-up worker, events
  committed open-loop at a steady rate (a small transaction every 10 ms, each event stamped just
  before its commit), and per money event `materialized_at - occurred_at` from
  `analytics.escrow_movements`: from the commit on the write side to the row in the read model.

"The read models hold every event" is checked in PostgreSQL, not taken from the worker: one
`escrow_movements` row per money event (escrow.funded/released/refunded, dispute.opened), the
`user_ratings` counts adding up to the reviews, and the `escrow_balances` sequences adding up to
the gig events (each gig's balance ends at its last event's sequence, so the last event of every
gig, money or not, is in). The worker's /metrics only says when that is worth asking.

The bench runs on a database of its own (`tulifo_bench_<id>_stream`, migrated, dropped at the
end): the relay republishes the whole outbox to a topic prefix it finds empty (bridges/relay.py,
`connect_kafka`), so the other benches' outbox rows and this bench's fresh prefixes must not
meet, and the counts above are then exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench import cpu, environment
from bench.environment import PG_ADMIN_URL
from bench.report import Row, Target, percentile, row
from bench.stream_peers import ratios
from bridges.outbox import append_events
from bridges.relay import OutboxRelay
from infrastructure.database import create_pool
from infrastructure.migrations import scratch_database
from infrastructure.settings import Settings
from streams.events import Event
from streams.topics import stream_of
from tables import escrow
from tests.streams.gig_factories import random_mix
from tests.streams.workers import READ_MODEL_AGENTS, Worker
from tests.streams.workers import spawn_worker as spawn_test_worker

REPO = Path(__file__).resolve().parents[1]

# Every phase (worker start and warm-up, a measurement, its catching up) ends by then.
PHASE_DEADLINE_S = 180.0
# The relay is woken by NOTIFY on every commit; the poll is only its safety net.
RELAY_POLL_S = 0.05
# ~100 gigs: enough for the worker to have joined its group, opened its PostgreSQL pool and its
# producer, and written every read model once before anything is timed.
WARMUP_EVENTS = 320
# How often the read models' progress is asked for (the worker's /metrics, then PostgreSQL).
POLL_S = 0.05
# Outbox rows per transaction when committing a batch ahead of a measurement.
COMMIT_CHUNK = 1_000
# The lag load commits what is due every 10 ms: small transactions, as API writes make.
TICK_S = 0.01
# A rate counts as sustained at 97% of the offered one (as api-write's).
RATE_TOLERANCE = 0.97
MONEY_TYPES = frozenset({"escrow.funded", "escrow.released", "escrow.refunded", "dispute.opened"})
REVIEW_TYPE = "review.created"

E2E_ROW = "stream end-to-end"
STAGE_ROW = "stream stateful stage"
LAG_ROW = "stream lag"
TARGET_E2E = 5_000.0
TARGET_LAG_P99_MS = 500.0


@dataclass(frozen=True)
class Plan:
    e2e_events: int
    stage_events: int
    lag_rate: float
    lag_seconds: float
    # Offered at the rate but not measured: the relay's and worker's first passes of the load.
    lag_warmup_s: float = 1.0
    seed: int = 20261202


# --- what the read models must hold ---------------------------------------------------------


@dataclass
class Expected:
    """The read models' totals once every event committed so far is folded.

    Assumes what random_mix makes: one booking per gig, every gig event an escrow-fold type, so a
    balance's `last_sequence` is its gig's last sequence.
    """

    events: int = 0
    money: int = 0
    reviews: int = 0
    last_sequences: int = 0
    _sequence: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)
    _last: dict[str, int] = field(default_factory=dict, repr=False)

    def add(self, events: Sequence[Event]) -> None:
        """Count `events`, committed in this order (the outbox numbers each aggregate's)."""
        for event in events:
            key = (stream_of(event.type), event.aggregate_id)
            sequence = self._sequence[key] = self._sequence.get(key, 0) + 1
            self.events += 1
            if event.type in MONEY_TYPES:
                self.money += 1
            if event.type == REVIEW_TYPE:
                self.reviews += 1
            if event.type in escrow.TYPES:
                self.last_sequences += sequence - self._last.get(event.aggregate_id, 0)
                self._last[event.aggregate_id] = sequence


@dataclass(frozen=True)
class ReadModels:
    movements: int
    review_count: int
    last_sequences: int
    # Epoch seconds of the first and last write (materialized_at), None while empty.
    first_write: float | None
    last_write: float | None

    def hold(self, expected: Expected) -> bool:
        return (
            self.movements == expected.money
            and self.review_count == expected.reviews
            and self.last_sequences == expected.last_sequences
        )

    def short(self, expected: Expected) -> str:
        return (
            f"movements {self.movements:,}/{expected.money:,}, reviews "
            f"{self.review_count:,}/{expected.reviews:,}, balance sequences "
            f"{self.last_sequences:,}/{expected.last_sequences:,}"
        )


_READ_MODELS = """
SELECT (SELECT count(*) FROM analytics.escrow_movements) AS movements,
       (SELECT coalesce(sum(count), 0) FROM analytics.user_ratings) AS review_count,
       (SELECT coalesce(sum(last_sequence), 0) FROM analytics.escrow_balances) AS last_sequences,
       extract(epoch FROM least(
           (SELECT min(materialized_at) FROM analytics.escrow_movements),
           (SELECT min(materialized_at) FROM analytics.user_ratings),
           (SELECT min(materialized_at) FROM analytics.escrow_balances)))::float8 AS first_write,
       extract(epoch FROM greatest(
           (SELECT max(materialized_at) FROM analytics.escrow_movements),
           (SELECT max(materialized_at) FROM analytics.user_ratings),
           (SELECT max(materialized_at) FROM analytics.escrow_balances)))::float8 AS last_write"""

# Between phases: the stage's fresh worker must see only its own events, and its relay (a new
# topic prefix, found empty) would otherwise publish every earlier row again.
_RESET = """TRUNCATE outbox, outbox_streams, analytics.escrow_balances,
    analytics.escrow_movements, analytics.user_ratings"""

# The relay's share of the lag: outbox.published_at is set once the batch is acked by Kafka.
_RELAY_LAGS = """
SELECT extract(epoch FROM published_at - created_at)::float8 * 1000 AS lag_ms
  FROM outbox
 WHERE event_id = ANY($1::uuid[])"""

_LAGS = """
SELECT event_id, extract(epoch FROM materialized_at - occurred_at)::float8 * 1000 AS lag_ms
  FROM analytics.escrow_movements
 WHERE event_id = ANY($1::uuid[])"""


async def read_models(conn: asyncpg.Connection) -> ReadModels:
    found = await conn.fetchrow(_READ_MODELS)
    return ReadModels(
        int(found["movements"]),
        int(found["review_count"]),
        int(found["last_sequences"]),
        found["first_write"],
        found["last_write"],
    )


# --- results and rows -----------------------------------------------------------------------


@dataclass
class Throughput:
    """A rate over a timed span, the CPU of who took part, or why there is none."""

    events: int
    rate: float = math.nan
    seconds: float = math.nan
    # Events inside the timed span (the stage leaves out the worker's first batch).
    timed_events: int = 0
    worker_cores: float = math.nan
    # This process: the relay (and the polling) during end-to-end.
    bench_cores: float = math.nan
    machine_cores: float = math.nan
    # The busiest other commands over the timed span, in cores (PostgreSQL, a neighbour).
    others: str = ""
    # From the read models' own timestamps: first and last write over the timed span.
    write_span_s: float = math.nan
    problem: str | None = None

    @property
    def done(self) -> bool:
        return not math.isnan(self.rate)


@dataclass
class LagRun:
    offered_rate: float
    seconds: float
    offered: int = 0
    achieved_rate: float = math.nan
    money_events: int = 0
    materialized: int = 0
    lag_ms: dict[str, float] = field(default_factory=dict)
    # Commit -> acked by Kafka and marked published: the part of the lag before the worker.
    relay_ms: dict[str, float] = field(default_factory=dict)
    worst_by_second_ms: list[float] = field(default_factory=list)
    worker_cores: float = math.nan
    machine_cores: float = math.nan
    others: str = ""
    problem: str | None = None

    @property
    def done(self) -> bool:
        return bool(self.lag_ms)


@dataclass
class StreamResult:
    plan: Plan
    machine: str
    e2e: Throughput
    stage: Throughput
    lag: LagRun
    database_s: float = math.nan

    def rows(
        self,
        *,
        faust: float | None = None,
        quix: float | None = None,
        consume_ceiling: float | None = None,
    ) -> list[Row]:
        return [
            self._e2e_row(faust, quix, consume_ceiling),
            self._stage_row(faust, quix, consume_ceiling),
            *self._lag_rows(),
        ]

    def _e2e_row(self, faust: float | None, quix: float | None, ceiling: float | None) -> Row:
        run = self.e2e
        target = Target(">=", TARGET_E2E, f"≥ {TARGET_E2E:,.0f}")
        if run.problem is not None:
            return row(E2E_ROW, math.nan, "events/s", target=target, note=f"failed: {run.problem}")
        parts = [
            f"{run.events:,} events in {run.seconds:.2f} s",
            f"cores: worker {run.worker_cores:.2f}, relay+bench {run.bench_cores:.2f}, "
            f"machine {run.machine_cores:.2f} (others: {run.others})",
            ratios(run.rate, faust=faust, quix=quix, ceiling=ceiling),
        ]
        return row(E2E_ROW, run.rate, "events/s", target=target, note=_join(parts))

    def _stage_row(self, faust: float | None, quix: float | None, ceiling: float | None) -> Row:
        run = self.stage
        if run.problem is not None:
            return row(STAGE_ROW, math.nan, "events/s", note=f"failed: {run.problem}")
        parts = [
            f"{run.timed_events:,} of {run.events:,} timed",
            f"cores: worker {run.worker_cores:.2f}, machine {run.machine_cores:.2f} "
            f"(others: {run.others})",
            ratios(run.rate, faust=faust, quix=quix, ceiling=ceiling),
            "goal ≥ quix",
        ]
        return row(STAGE_ROW, run.rate, "events/s", note=_join(parts))

    def _lag_rows(self) -> list[Row]:
        run = self.lag
        offered = f"{run.offered_rate:,.0f} events/s"
        p99_target = Target("<", TARGET_LAG_P99_MS, f"< {TARGET_LAG_P99_MS:.0f} @ {offered}")
        rate_target = Target(">=", RATE_TOLERANCE * run.offered_rate, f"{offered} offered")
        if run.problem is not None:
            failed = f"failed: {run.problem}"
            return [
                row(f"{LAG_ROW} p50", math.nan, "ms", note=failed),
                row(f"{LAG_ROW} p99", math.nan, "ms", target=p99_target, note=failed),
                row(f"{LAG_ROW} achieved rate", run.achieved_rate, "events/s", target=rate_target),
            ]
        complete = run.materialized == run.money_events
        p99 = row(
            f"{LAG_ROW} p99",
            run.lag_ms.get("p99", math.nan),
            "ms",
            target=p99_target,
            note=_join(
                [
                    f"max {run.lag_ms.get('p100', math.nan):,.0f} ms",
                    f"cores: worker {run.worker_cores:.2f}, machine {run.machine_cores:.2f} "
                    f"(others: {run.others})",
                ]
            ),
        )
        sustained = run.achieved_rate >= RATE_TOLERANCE * run.offered_rate
        if not (sustained and complete):
            why = "rate not sustained" if not sustained else "events missing"
            p99 = Row(p99.name, p99.value, p99.unit, p99.target, "misses", f"{why}; {p99.note}")
        return [
            row(
                f"{LAG_ROW} p50",
                run.lag_ms.get("p50", math.nan),
                "ms",
                note=(
                    f"{run.materialized:,}/{run.money_events:,} money events, commit -> "
                    f"escrow_movements row; of it commit -> published (relay) "
                    f"p50 {run.relay_ms.get('p50', math.nan):.0f} ms, "
                    f"p99 {run.relay_ms.get('p99', math.nan):.0f} ms"
                ),
            ),
            p99,
            row(
                f"{LAG_ROW} achieved rate",
                run.achieved_rate,
                "events/s",
                target=rate_target,
                note=f"{run.offered:,} events in {run.seconds:.0f} s, after "
                f"{self.plan.lag_warmup_s:.0f} s not counted",
            ),
        ]


def _join(parts: Sequence[str]) -> str:
    return "; ".join(p for p in parts if p)


# --- the pipeline's processes ---------------------------------------------------------------


def spawn_worker(settings: Settings, directory: Path, name: str) -> Worker:
    """`python -m streams.worker` with the read-model folds only, a data directory, log file and
    metrics port of its own; tied to this process's life (ManagedProcess)."""
    return spawn_test_worker(settings, directory, name, agents=READ_MODEL_AGENTS)


def _end_worker(worker: Worker) -> None:
    # Killed, not stopped: nothing of it is kept, and a Faust stop takes seconds.
    worker.process.kill()
    worker.process.stop(timeout=0)  # closes its log file


def _last_words(worker: Worker) -> str:
    lines = [line for line in worker.log(4000).splitlines() if line.strip()]
    return lines[-1][:200] if lines else "(no output)"


class WorkerDied(RuntimeError):
    pass


@dataclass
class Progress:
    """How far a phase got, for the note when it runs out of time."""

    last: str = "no look at the read models yet"


@dataclass(frozen=True)
class Sample:
    """One look at the worker: when, how many events its folds had taken, its CPU then."""

    at: float
    folded: int
    worker_cpu_s: float


async def wait_for_read_models(
    worker: Worker,
    conn: asyncpg.Connection,
    expected: Expected,
    *,
    samples: list[Sample] | None = None,
    window: cpu.CpuWindow | None = None,
    progress: Progress | None = None,
) -> tuple[float, ReadModels]:
    """Poll until the read models hold `expected`; returns when that was seen and what they held.

    The worker's fold counter is asked first (cheap), PostgreSQL once it has taken every event.
    `samples` gets every look; `window` is started at the first look that finds events folded
    and stopped at the end. Raises WorkerDied if the worker exits; the caller's deadline bounds
    the wait.
    """
    pid = worker.process.popen.pid
    window_started = False
    while True:
        if not worker.process.alive:
            raise WorkerDied(f"the worker exited ({_last_words(worker)})")
        counts = await worker.fold_counts()
        folded = int(sum(counts.values()))
        now = time.time()
        if samples is not None:
            with contextlib.suppress(OSError):
                samples.append(Sample(now, folded, cpu.process_cpu_s(pid)))
        if window is not None and folded and not window_started:
            window.start()
            window_started = True
        if progress is not None:
            progress.last = f"the worker folded {folded:,} of {expected.events:,} events"
        if folded >= expected.events:
            last = await read_models(conn)
            if progress is not None:
                progress.last += f"; read models: {last.short(expected)}"
            if last.hold(expected):
                if window is not None and window_started:
                    window.stop()
                return now, last
        await asyncio.sleep(POLL_S)


@asynccontextmanager
async def _phase(what: str, worker: Worker | None = None) -> AsyncIterator[Progress]:
    """A bounded phase: its deadline, and an error that says which phase and how far it got."""
    progress = Progress()
    try:
        async with asyncio.timeout(PHASE_DEADLINE_S):
            yield progress
    except TimeoutError:
        raise PhaseFailed(
            f"{what}: not done within {PHASE_DEADLINE_S:.0f} s; {progress.last}"
        ) from None
    except PhaseFailed:
        raise
    except Exception as error:
        # A worker that died has said so already; for anything else, its last line may say why.
        words = (
            ""
            if worker is None or isinstance(error, WorkerDied)
            else f" (worker: {_last_words(worker)})"
        )
        raise PhaseFailed(f"{what}: {type(error).__name__}: {error}{words}"[:300]) from error


class PhaseFailed(RuntimeError):
    pass


# --- the measurements -----------------------------------------------------------------------


async def measure(settings: Settings, *, run_id: str, workdir: Path, plan: Plan) -> StreamResult:
    """All three measurements; a phase that fails leaves its rows with a note, never a crash.

    Every process started here (two workers, in turn) is killed before this returns, and the
    database is dropped, however the phases end.
    """
    directory = workdir / "stream"
    directory.mkdir(parents=True, exist_ok=True)
    result = StreamResult(
        plan,
        environment.machine_name(),
        Throughput(plan.e2e_events),
        Throughput(plan.stage_events),
        LagRun(plan.lag_rate, plan.lag_seconds),
    )
    rng = random.Random(plan.seed)
    try:
        async with AsyncExitStack() as stack:
            started = time.perf_counter()
            database_url = await stack.enter_async_context(
                scratch_database(PG_ADMIN_URL, f"tulifo_bench_{run_id}_stream")
            )
            result.database_s = time.perf_counter() - started
            base = settings.model_copy(
                update={"database_url": database_url, "relay_poll_seconds": RELAY_POLL_S}
            )
            # The write side's connections (jsonb codecs): append_events is its statement.
            pool = await create_pool(database_url, min_size=1, max_size=1)
            stack.push_async_callback(pool.close)
            conn = await stack.enter_async_context(pool.acquire())
            await _live_phases(result, base, conn, rng, directory)
            await conn.execute(_RESET)
            await _stage_phase(result, base, conn, rng, directory)
    except Exception as error:  # the database itself, or tearing down: each row left says so
        problem = f"{type(error).__name__}: {error}"[:300]
        for run in (result.e2e, result.stage, result.lag):
            if run.problem is None and not run.done:
                run.problem = problem
    return result


async def commit(conn: asyncpg.Connection, events: Sequence[Event]) -> None:
    """Commit `events` to the outbox with the write side's statement, in order, in chunks."""
    for start in range(0, len(events), COMMIT_CHUNK):
        async with conn.transaction():
            await append_events(conn, events[start : start + COMMIT_CHUNK])


def gig_events(rng: random.Random, count: int) -> list[Event]:
    """`count` events of random_mix; a prefix of it holds a prefix of each gig's history."""
    return random_mix(rng, gigs=math.ceil(count / 3) + 1)[:count]


async def publish_all(relay: OutboxRelay) -> int:
    """Publish every unpublished outbox row with a relay that leads (started by the caller)."""
    total = 0
    while published := await relay.publish_pending():
        total += published
    return total


def details(result: StreamResult) -> dict[str, Any]:
    """The raw figures for the JSON file."""
    return asdict(result)


async def _live_phases(
    result: StreamResult,
    base: Settings,
    conn: asyncpg.Connection,
    rng: random.Random,
    directory: Path,
) -> None:
    """End-to-end, then the lag at a steady rate, on one warmed-up worker and one relay."""
    settings = _settings_for(base, "e2e")
    expected = Expected()
    warmup = gig_events(rng, WARMUP_EVENTS)
    events = gig_events(rng, result.plan.e2e_events)
    # Unwound last in, first out: the relay stops before the worker is killed.
    async with AsyncExitStack() as stack:
        worker: Worker | None = None
        try:
            async with _phase("warm-up"):
                await commit(conn, warmup)
                expected.add(warmup)
                worker = spawn_worker(settings, directory, "worker-e2e")
                stack.callback(_end_worker, worker)
                relay = OutboxRelay(settings)
                stack.push_async_callback(relay.stop)
            async with _phase("warm-up", worker) as progress:
                await relay.start()
                await relay.connect_kafka()
                await publish_all(relay)
                await wait_for_read_models(worker, conn, expected, progress=progress)
                progress.last = f"warmed up; committing {len(events):,} events to the outbox"
                # Committed while nothing publishes: the relay then starts on a full outbox, as
                # after an outage of its own, and the clock with it.
                await commit(conn, events)
                expected.add(events)
        except PhaseFailed as error:
            result.e2e.problem = result.lag.problem = str(error)
            return
        assert worker is not None

        run = result.e2e
        try:
            async with _phase("end-to-end", worker) as progress:
                window = cpu.CpuWindow(worker.process.popen.pid)
                window.start()
                began = time.time()
                relaying = asyncio.create_task(relay.run())
                seen, models = await wait_for_read_models(worker, conn, expected, progress=progress)
                window.stop()
        except PhaseFailed as error:
            run.problem = str(error)
            # Bounded phases: a pipeline that did not catch up would only time out again.
            result.lag.problem = "not run: the end-to-end phase failed"
            return
        run.seconds = seen - began
        run.timed_events = run.events
        run.rate = run.events / run.seconds
        _account(run, window)
        run.bench_cores = window.cores(window.client_s)
        if models.last_write is not None:
            run.write_span_s = models.last_write - began

        if relaying.done():
            result.lag.problem = f"the relay stopped: {relaying.exception()!r}"
            return
        try:
            async with _phase("lag", worker) as progress:
                await _lag_phase(result.lag, result.plan, conn, rng, expected, worker, progress)
        except PhaseFailed as error:
            result.lag.problem = str(error)


async def _lag_phase(
    run: LagRun,
    plan: Plan,
    conn: asyncpg.Connection,
    rng: random.Random,
    expected: Expected,
    worker: Worker,
    progress: Progress,
) -> None:
    warmup = int(plan.lag_warmup_s * plan.lag_rate)
    events = gig_events(rng, warmup + int(plan.lag_seconds * plan.lag_rate))
    window = cpu.CpuWindow(worker.process.popen.pid)
    window.start()
    committed, window_started, window_ended = await offer(
        conn, events, rate=plan.lag_rate, measured_from=warmup
    )
    window.stop()
    _account(run, window)
    expected.add(committed)
    measured = committed[warmup:]
    run.offered = len(measured)
    run.seconds = window_ended - window_started
    run.achieved_rate = run.offered / run.seconds
    money = {e.event_id: e.occurred_at for e in measured if e.type in MONEY_TYPES}
    run.money_events = len(money)
    await wait_for_read_models(worker, conn, expected, progress=progress)
    found = await conn.fetch(_LAGS, list(money))
    lags = sorted(float(r["lag_ms"]) for r in found)
    run.materialized = len(lags)
    run.lag_ms = _percentiles(lags)
    relayed = await conn.fetch(_RELAY_LAGS, list(money))
    run.relay_ms = _percentiles(sorted(float(r["lag_ms"]) for r in relayed))
    # The worst lag per second of commits tells one stall from a pipeline falling behind.
    if money:
        first = min(money.values())
        worst: dict[int, float] = {}
        for r in found:
            second = int((money[r["event_id"]] - first).total_seconds())
            worst[second] = max(worst.get(second, 0.0), float(r["lag_ms"]))
        run.worst_by_second_ms = [round(worst[s], 1) for s in sorted(worst)]


async def offer(
    conn: asyncpg.Connection, events: Sequence[Event], *, rate: float, measured_from: int
) -> tuple[list[Event], float, float]:
    """Commit `events` open-loop at `rate`: every TICK_S one transaction with whatever is due by
    then, however long earlier commits took (a slow commit is caught up, not spread out).

    Each event is stamped `occurred_at` = now just before its transaction, as the write side
    creates an event in the transaction that commits it. Returns the events as committed and
    the measured window (epoch seconds): from when event `measured_from` was due to the end of
    the last commit.
    """
    committed: list[Event] = []
    loop = asyncio.get_running_loop()
    started_loop, started_wall = loop.time(), time.time()
    ticks = 0
    while len(committed) < len(events):
        due = min(len(events), int((loop.time() - started_loop) * rate) + 1)
        if due > len(committed):
            now = datetime.now(UTC)
            chunk = [
                e.model_copy(update={"occurred_at": now}) for e in events[len(committed) : due]
            ]
            async with conn.transaction():
                await append_events(conn, chunk)
            committed += chunk
        ticks += 1
        await asyncio.sleep(max(0.0, started_loop + ticks * TICK_S - loop.time()))
    return committed, started_wall + measured_from / rate, time.time()


async def _stage_phase(
    result: StreamResult,
    base: Settings,
    conn: asyncpg.Connection,
    rng: random.Random,
    directory: Path,
) -> None:
    """M events on the topics first, then a fresh worker folding them with nothing else running."""
    run = result.stage
    settings = _settings_for(base, "stage")
    expected = Expected()
    events = gig_events(rng, run.events)
    samples: list[Sample] = []
    worker: Worker | None = None
    window: cpu.CpuWindow | None = None
    try:
        async with _phase("pre-publishing"):
            await commit(conn, events)
            expected.add(events)
            relay = OutboxRelay(settings)
            try:
                await relay.start()
                await relay.connect_kafka()
                published = await publish_all(relay)
            finally:
                await relay.stop()
            if published != len(events):
                raise RuntimeError(f"the relay published {published:,} of {len(events):,}")
        worker = spawn_worker(settings, directory, "worker-stage")
        window = cpu.CpuWindow(worker.process.popen.pid)
        try:
            async with _phase("stateful stage", worker) as progress:
                await wait_for_read_models(
                    worker, conn, expected, samples=samples, window=window, progress=progress
                )
                models = await read_models(conn)
        finally:
            _end_worker(worker)
    except PhaseFailed as error:
        run.problem = str(error)
        return
    # From the first look that found a batch folded to the first that found them all: the
    # worker's first batch is left out, as the peers leave out everything before their first
    # event (start-up, the group join).
    first = next((s for s in samples if s.folded > 0), None)
    last = next((s for s in samples if s.folded >= expected.events), samples[-1])
    if first is None or last.at <= first.at:
        run.problem = f"every event was folded before a second look ({len(samples)} looks)"
        return
    run.seconds = last.at - first.at
    run.timed_events = last.folded - first.folded
    run.rate = run.timed_events / run.seconds
    run.worker_cores = (last.worker_cpu_s - first.worker_cpu_s) / run.seconds
    if window is not None:
        run.machine_cores = window.cores(window.machine_s)
        run.others = window.busiest_others()
    if models.first_write is not None and models.last_write is not None:
        run.write_span_s = models.last_write - models.first_write


def _settings_for(base: Settings, phase: str) -> Settings:
    """A topic prefix and consumer group of the phase's own (a fresh group reads from the start
    of its topics, so a phase's worker sees only its phase's events)."""
    return base.model_copy(
        update={
            "topic_prefix": f"{base.topic_prefix}-{phase}",
            "faust_app_id": f"{base.topic_prefix}-{phase}-{uuid.uuid4().hex[:6]}",
        }
    )


def _percentiles(ascending: list[float]) -> dict[str, float]:
    return {f"p{p:g}": percentile(ascending, p) for p in (50, 90, 95, 99, 99.9, 100)}


def _account(run: Throughput | LagRun, window: cpu.CpuWindow) -> None:
    """Cores the worker, the machine and the busiest others used over `window`."""
    run.worker_cores = window.cores(window.server_s)
    run.machine_cores = window.cores(window.machine_s)
    run.others = window.busiest_others()
