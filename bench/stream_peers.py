"""`faust-table` and `quix`: the stream-processing peers the project's stateful stage is judged by.

One topic of pre-produced ~200-byte JSON rating events (4 partitions, 1,000 keys: kafka-ceiling's
value size; not timed), then each peer in a child process of its own (`bench/peers/`), one after
the other, so each has its CPU to itself:

- `faust-table per-event`: a plain Faust agent doing `table[key] += rating` per event (memory
  store, Faust's defaults). The baseline: the other stream rows are given as a ratio to it.
- `quix per-key sum`: Quix Streams keeping the same sum in its RocksDB state.

Each peer times itself from its first event to its N-th (start-up and group join are not
counted) and reports its own CPU over that span. A peer that cannot run (not installed, broker
trouble, no result in time) leaves a row without a value whose note says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from bench import harness
from bench.report import Row, row

PEERS_DIR = Path(__file__).parent / "peers"
# Quix Streams lives in a venv of its own (`make bench`; bench/peers/requirements-quix.txt).
QUIX_PYTHON = Path(__file__).parent.parent / ".venv-quix" / "bin" / "python"


def quix_python() -> str | None:
    """The interpreter of the Quix peer: .venv-quix's when it exists, else this one (which may
    have quixstreams installed by hand; the row says so when it has not)."""
    return str(QUIX_PYTHON) if QUIX_PYTHON.exists() else None


# Start-up and group join take ~7 s per peer on Tansu; a peer still going after this is broken.
DEADLINE_S = 120.0
# The parent waits a little longer than the child's own deadline, so the child's own account of
# why it gave up (how far it got) is what ends up in the note.
PARENT_GRACE_S = 10.0

FAUST_ROW = "faust-table per-event"
QUIX_ROW = "quix per-key sum"
FAUST_REFERENCE = "§6 reference ≈ 1.3-2.1k"
QUIX_REFERENCE = "§6 reference ≈ 29-42k"


@dataclass(frozen=True)
class PeerRun:
    """One peer's run: its rate over its timed span, or why there is none (and its last words).

    `wall_s` is the whole child, start-up and group join included.
    """

    events: int
    rate: float = math.nan
    cores: float = math.nan
    wall_s: float = math.nan
    problem: str | None = None
    output_tail: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StreamPeersResult:
    topic: str
    topic_events: int
    produce_s: float
    faust: PeerRun | None
    quix: PeerRun | None

    def rows(self, consume_ceiling: float | None) -> list[Row]:
        rows = []
        baseline = self.faust.rate if self.faust is not None else None
        if self.faust is not None:
            rows.append(
                _peer_row(
                    FAUST_ROW,
                    self.faust,
                    "memory store, Faust defaults",
                    ratios(self.faust.rate, ceiling=consume_ceiling),
                    FAUST_REFERENCE,
                )
            )
        if self.quix is not None:
            rows.append(
                _peer_row(
                    QUIX_ROW,
                    self.quix,
                    "RocksDB state",
                    ratios(self.quix.rate, faust=baseline, ceiling=consume_ceiling),
                    QUIX_REFERENCE,
                )
            )
        return rows


def ratios(
    rate: float,
    *,
    faust: float | None = None,
    quix: float | None = None,
    ceiling: float | None = None,
) -> str:
    """`rate` against the same run's peers and consume ceiling, for a row's note.

    Only the references that were measured in this run appear: "4.1x faust-table, 0.21x quix,
    0.02 of consume ceiling".
    """
    parts = []
    for name, reference in (("faust-table", faust), ("quix", quix)):
        if _measured(rate) and reference is not None and _measured(reference):
            parts.append(f"{rate / reference:,.{_digits(rate / reference)}f}x {name}")
    if _measured(rate) and ceiling is not None and _measured(ceiling):
        parts.append(f"{rate / ceiling:.{_digits(rate / ceiling)}f} of consume ceiling")
    return ", ".join(parts)


def _measured(value: float) -> bool:
    return value > 0 and not math.isnan(value)


def _digits(ratio: float) -> int:
    # Two significant figures for the small ratios, no false precision for the big ones.
    return 0 if ratio >= 100 else 1 if ratio >= 1 else 2 if ratio >= 0.1 else 3


def _peer_row(name: str, run: PeerRun, what: str, ratio_note: str, reference: str) -> Row:
    if run.problem is not None:
        return row(name, math.nan, "events/s", note=f"did not run: {run.problem}")
    parts = [what, f"{run.cores:.2f} cores", ratio_note, reference]
    return row(name, run.rate, "events/s", note="; ".join(p for p in parts if p))


async def measure(
    bootstrap: str,
    *,
    topic_prefix: str,
    workdir: Path,
    faust_events: int | None,
    quix_events: int | None,
    deadline_s: float = DEADLINE_S,
) -> StreamPeersResult:
    """Pre-produce the events once, then run each selected peer (None: not selected)."""
    topic = f"{topic_prefix}.bench-ratings"
    wanted = max(n or 0 for n in (faust_events, quix_events))
    try:
        produce_s = await harness.pre_produce(bootstrap, topic, wanted, deadline_s=deadline_s)
    except Exception as error:  # both rows say why; the rest of the bench goes on
        problem = f"pre-producing {wanted:,} events failed: {error!r}"[:200]
        return StreamPeersResult(
            topic,
            wanted,
            math.nan,
            PeerRun(faust_events, problem=problem) if faust_events else None,
            PeerRun(quix_events, problem=problem) if quix_events else None,
        )

    faust = quix = None
    if faust_events:
        app_id = f"{topic_prefix}-faust-table"
        faust = await _run_peer(
            "faust-table",
            harness.python_child(
                PEERS_DIR / "faust_table.py",
                bootstrap,
                topic,
                app_id,
                faust_events,
                "--partitions",
                harness.PARTITIONS,
                "--timeout",
                deadline_s,
            ),
            faust_events,
            workdir,
            deadline_s,
        )
    if quix_events:
        quix = await _run_peer(
            "quix",
            harness.python_child(
                PEERS_DIR / "quix_sum.py",
                bootstrap,
                topic,
                f"{topic_prefix}-quix",
                quix_events,
                workdir / "quix-state",
                "--timeout",
                deadline_s,
                python=quix_python(),
            ),
            quix_events,
            workdir,
            deadline_s,
        )
    return StreamPeersResult(topic, wanted, produce_s, faust, quix)


async def _run_peer(
    name: str, argv: list[str], events: int, workdir: Path, deadline_s: float
) -> PeerRun:
    # Its own working directory: Faust keeps its data directory there.
    cwd = workdir / name
    cwd.mkdir(parents=True, exist_ok=True)
    try:
        child = await harness.run_child(
            argv,
            timeout_s=deadline_s + PARENT_GRACE_S,
            log_path=workdir / f"{name}.log",
            cwd=cwd,
        )
    except harness.ChildFailed as error:
        return PeerRun(events, problem=str(error), output_tail=error.output_tail)
    return PeerRun(
        events,
        rate=child.rate,
        cores=child.cores,
        wall_s=child.wall_s,
    )
