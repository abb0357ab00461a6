"""The stateful agents' table: changelog recovery keeps each key's newest value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust

from agents.folding import FoldTable, memory_store


@dataclass
class _Message:
    value: bytes | None
    partition: int


@dataclass
class _ChangelogRecord:
    key: str
    value: Any
    message: _Message


def record(key: str, value: dict[str, Any] | None, partition: int = 0) -> _ChangelogRecord:
    return _ChangelogRecord(key, value, _Message(b"x" if value is not None else None, partition))


def table() -> FoldTable:
    app = faust.App("fold-table-test", store="memory://", autodiscover=False)
    return FoldTable(app, name="totals", default=None, partitions=4)


def test_recovery_keeps_the_highest_sequence_whatever_the_log_order() -> None:
    recovered = table()
    # A worker that lost the partition wrote seq 3 after the new owner had written seq 5.
    recovered.apply_changelog_batch(
        [
            record("w1", {"seq": 4, "count": 4}),
            record("w1", {"seq": 5, "count": 5}),
            record("w1", {"seq": 3, "count": 3}),
            record("w2", {"seq": 1, "count": 1}, partition=2),
        ]
    )
    values = memory_store(recovered).data
    assert values["w1"] == {"seq": 5, "count": 5}
    assert values["w2"] == {"seq": 1, "count": 1}
    assert memory_store(recovered)._key_partition == {"w1": 0, "w2": 2}


def test_a_newer_record_replaces_what_memory_holds_and_a_tombstone_deletes() -> None:
    recovered = table()
    memory_store(recovered).data["w1"] = {"seq": 2, "count": 2}
    recovered.apply_changelog_batch([record("w1", {"seq": 7, "count": 7})])
    assert memory_store(recovered).data["w1"] == {"seq": 7, "count": 7}
    recovered.apply_changelog_batch([record("w1", None)])
    assert "w1" not in memory_store(recovered).data
