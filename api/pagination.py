"""Keyset pagination on (created_at, id), newest first, with an opaque cursor.

Keyset rather than offset: a page costs one index range scan however deep it is, and rows
inserted while someone pages never shift or repeat items. The cursor is the last item's sort
key, base64url-encoded JSON; it is opaque to clients and checked on the way back in.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from fastapi import Query

from api.errors import Invalid

DEFAULT_LIMIT: Final = 20
MAX_LIMIT: Final = 100
# A cursor we issued is ~80 characters; anything much longer is not one of ours.
MAX_CURSOR_CHARS: Final = 200

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page (1..100)")]
CursorParam = Annotated[
    str | None,
    Query(max_length=MAX_CURSOR_CHARS, description="nextCursor of the previous page"),
]


@dataclass(frozen=True)
class Cursor:
    """The sort key of the last item seen; the next page starts strictly after it."""

    created_at: datetime
    id: uuid.UUID


def encode_cursor(created_at: datetime, item_id: uuid.UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(item_id)], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def in_utc(value: datetime) -> datetime:
    """`value` as a UTC instant. ValueError when it has no time zone, or when it is one of the
    few Python can hold only in its own zone (year 1 east of UTC, year 9999 west of it): the
    database driver would fail converting it, after the request was accepted."""
    if value.tzinfo is None:
        raise ValueError("a time without a time zone")
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("a time out of range") from exc


def instant_param(value: datetime | None, *, field: str) -> datetime | None:
    """A time a client sent as a query parameter, in UTC (one without a zone is taken as UTC); a
    422 naming `field` when unusable."""
    if value is None:
        return None
    try:
        return in_utc(value if value.tzinfo is not None else value.replace(tzinfo=UTC))
    except ValueError as exc:
        raise Invalid(
            f"invalid request: {field}: {exc}",
            details=[{"field": field, "message": str(exc), "type": "datetime"}],
        ) from exc


def decode_cursor(value: str | None) -> Cursor | None:
    """The cursor a client sent back; a malformed one is a 422 naming `cursor`."""
    if value is None:
        return None
    try:
        padded = value + "=" * (-len(value) % 4)
        created_at, item_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        cursor = Cursor(
            created_at=in_utc(datetime.fromisoformat(created_at)), id=uuid.UUID(item_id)
        )
    except (ValueError, TypeError, binascii.Error, RecursionError) as exc:
        message = "not a cursor this API issued"
        raise Invalid(
            f"invalid request: cursor: {message}",
            details=[{"field": "cursor", "message": message, "type": "cursor"}],
        ) from exc
    return cursor


def split_page(rows: Sequence[Mapping[str, Any]], *, limit: int) -> tuple[list[Any], str | None]:
    """The page and the cursor to the next one (None on the last page).

    `rows` is a query's answer to `LIMIT limit + 1`: the extra row only tells that more exist.
    """
    page = list(rows[:limit])
    if len(rows) <= limit:
        return page, None
    last = page[-1]
    return page, encode_cursor(last["created_at"], last["id"])
