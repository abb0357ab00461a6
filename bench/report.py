"""Result rows, their verdicts against DESIGN.md §6, the printed table and the JSON file."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

RESULTS_DIR = Path(__file__).parent / "results"

Verdict = Literal["meets", "misses", "-"]


@dataclass(frozen=True)
class Target:
    """A §6 target: `value <op> threshold`, shown as `text`."""

    op: Literal["<", ">=", "=="]
    threshold: float
    text: str

    def judge(self, value: float) -> Verdict:
        if math.isnan(value):
            return "misses"
        met = {
            "<": value < self.threshold,
            ">=": value >= self.threshold,
            "==": value == self.threshold,
        }[self.op]
        return "meets" if met else "misses"


@dataclass(frozen=True)
class Row:
    name: str
    value: float
    unit: str
    target: str = ""
    verdict: Verdict = "-"
    note: str = ""


def row(name: str, value: float, unit: str, *, target: Target | None = None, note: str = "") -> Row:
    """A row, judged against `target` when §6 has one."""
    if target is None:
        return Row(name, value, unit, note=note)
    return Row(name, value, unit, target.text, target.judge(value), note)


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list (NaN when empty)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _fmt(value: float) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value):
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def render_table(rows: list[Row]) -> str:
    """A plain-text table, one line per row; the note column only when some row has one."""
    header = ["name", "value", "unit", "target", "verdict", "note"]
    cells = [[r.name, _fmt(r.value), r.unit, r.target, r.verdict, r.note] for r in rows]
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header))]
    right = {1}  # numbers align right

    def line(values: list[str]) -> str:
        parts = [
            v.rjust(widths[i]) if i in right else v.ljust(widths[i]) for i, v in enumerate(values)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(c) for c in cells)])


def write_json(
    rows: list[Row], *, started: datetime, meta: dict[str, Any], details: dict[str, Any]
) -> Path:
    """bench/results/<timestamp>.json: the rows, the run's settings and each bench's raw figures."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{started.strftime('%Y%m%dT%H%M%S')}.json"
    document = {
        "started_at": started.isoformat(timespec="seconds"),
        **meta,
        "rows": [_jsonable(asdict(r)) for r in rows],
        "details": _jsonable(details),
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def _jsonable(value: Any) -> Any:
    # NaN is not JSON; a measurement that did not happen is null.
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value
