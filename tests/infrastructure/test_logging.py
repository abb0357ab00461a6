"""The API's access line: written without the logging module, it must read as if it went through
JsonFormatter (infrastructure/logging.py), the same keys and the same timestamp text."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime

import pytest

from infrastructure import logging as tulifo_logging
from infrastructure.logging import ACCESS_LOGGER, JsonFormatter, _AccessLines, request_id_var

SERVICE = "tulifo-api"


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_an_access_line_is_what_the_json_formatter_writes_for_the_same_record() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(SERVICE))
    token = request_id_var.set("req-1")
    try:
        _AccessLines(handler, SERVICE).write("PATCH", "/api/users/me/profile", 200, 6.5, "/r")
        logger = logging.getLogger(ACCESS_LOGGER)
        record = logger.makeRecord(
            ACCESS_LOGGER,
            logging.INFO,
            __file__,
            1,
            "%s %s %s",
            ("PATCH", "/api/users/me/profile", 200),
            None,
            extra={"status": 200, "duration_ms": 6.5, "route": "/r"},
        )
        handler.emit(record)
    finally:
        request_id_var.reset(token)
    ours, formatted = _lines(stream)
    assert ours.pop("ts") and formatted.pop("ts")
    assert ours == formatted
    assert list(ours) == list(formatted)


@pytest.mark.parametrize(
    "instant_ns",
    [
        1_796_400_000_000_000_000,  # on a second
        1_796_400_000_999_999_999,  # the last nanosecond of it
        1_796_400_001_000_500_000,  # half a millisecond into the next
        1_796_486_399_123_456_789,  # a day's last second
    ],
)
def test_the_access_line_timestamp_reads_as_isoformat_with_milliseconds(
    monkeypatch: pytest.MonkeyPatch, instant_ns: int
) -> None:
    lines = _AccessLines(logging.StreamHandler(io.StringIO()), SERVICE)
    # The second's text is cached: ask once a second earlier, so the cache must move on.
    monkeypatch.setattr(tulifo_logging.time, "time_ns", lambda: instant_ns - 1_000_000_000)
    lines._timestamp()
    monkeypatch.setattr(tulifo_logging.time, "time_ns", lambda: instant_ns)
    expected = datetime.fromtimestamp(instant_ns // 1000 / 1_000_000, UTC)
    assert lines._timestamp() == expected.isoformat(timespec="milliseconds")
