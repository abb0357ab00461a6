"""In-app notifications (seed: `GET /api/notifications`), read from the MongoDB the agents fill.

Pages are newest first and follow an opaque `cursor`: the last item's (createdAt, id), so
notifications made in the same millisecond are neither skipped nor repeated
(tables/notifications.py). `before` (a time) is the older way to page, kept for clients that use
it; it cannot tell apart notifications of one millisecond.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import Path, Query

from api.auth.dependencies import SignedIn
from api.envelope import Envelope, ok
from api.errors import Invalid, NotFound
from api.pagination import CursorParam, in_utc, instant_param
from api.routers import DomainRouter
from api.schemas import ResponseModel
from tables import notifications as store

router = DomainRouter(prefix="/notifications", tags=["notifications"])

MAX_PAGE = 100


class NotificationOut(ResponseModel):
    id: str
    type: str
    title: str
    body: str
    # The page of the web app it is about (e.g. "/projects/<id>").
    url: str
    read: bool
    created_at: datetime


class NotificationPage(ResponseModel):
    items: list[NotificationOut]
    unread_count: int
    # Pass as `cursor` to get the next (older) page; null on the last page.
    next_cursor: str | None
    # The older way: pass as `before`; null on the last page.
    next_before: datetime | None


class UnreadCount(ResponseModel):
    unread_count: int


def _out(document: dict[str, Any]) -> NotificationOut:
    return NotificationOut(
        id=document["_id"],
        type=document.get("type", ""),
        title=document.get("title", ""),
        body=document.get("body", ""),
        url=document.get("url", ""),
        read=bool(document.get("read", False)),
        created_at=document["createdAt"],
    )


def encode_cursor(position: store.Position) -> str:
    # Milliseconds are what MongoDB holds, and what the next page compares with.
    raw = json.dumps([position.created_at.isoformat(timespec="milliseconds"), position.id])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(value: str | None) -> store.Position | None:
    """The cursor a client sent back; a malformed one is a 422 naming `cursor`."""
    if value is None:
        return None
    try:
        padded = value + "=" * (-len(value) % 4)
        created_at, item_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(item_id, str):
            raise ValueError("not a cursor")
        return store.Position(in_utc(datetime.fromisoformat(created_at)), item_id)
    except (ValueError, TypeError, binascii.Error, RecursionError) as exc:
        message = "not a cursor this API issued"
        raise Invalid(
            f"invalid request: cursor: {message}",
            details=[{"field": "cursor", "message": message, "type": "cursor"}],
        ) from exc


@router.get("", response_model=Envelope[NotificationPage])
async def list_notifications(
    caller: SignedIn,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    cursor: CursorParam = None,
    before: Annotated[datetime | None, Query(description="nextBefore of the previous page")] = None,
    unread_only: Annotated[bool, Query(alias="unreadOnly")] = False,
) -> Envelope[NotificationPage]:
    """The caller's notifications, newest first."""
    user_id = str(caller.user.id)
    documents = await store.list_for_user(
        caller.mongo,
        user_id=user_id,
        limit=limit + 1,
        after=decode_cursor(cursor),
        before=instant_param(before, field="before"),
        unread_only=unread_only,
    )
    page = documents[:limit]
    more = len(documents) > limit
    last = store.Position(page[-1]["createdAt"], page[-1]["_id"]) if more else None
    unread = await store.count_unread(caller.mongo, user_id=user_id)
    return ok(
        NotificationPage(
            items=[_out(d) for d in page],
            unread_count=unread,
            next_cursor=encode_cursor(last) if last is not None else None,
            next_before=last.created_at if last is not None else None,
        )
    )


@router.get("/unread-count", response_model=Envelope[UnreadCount])
async def unread_count(caller: SignedIn) -> Envelope[UnreadCount]:
    """How many of the caller's notifications are unread (for a badge)."""
    return ok(
        UnreadCount(
            unread_count=await store.count_unread(caller.mongo, user_id=str(caller.user.id))
        )
    )


@router.post("/{notification_id}/read", response_model=Envelope[dict[str, bool]])
async def mark_read(
    caller: SignedIn, notification_id: Annotated[str, Path(max_length=128)]
) -> Envelope[dict[str, bool]]:
    """Mark one of the caller's notifications read (idempotent)."""
    user_id = str(caller.user.id)
    if not await store.exists_for_user(
        caller.mongo, user_id=user_id, notification_id=notification_id
    ):
        raise NotFound("no such notification")
    await store.mark_read(caller.mongo, user_id=user_id, notification_id=notification_id)
    return ok({"read": True})


@router.post("/read-all", response_model=Envelope[dict[str, int]])
async def mark_all_read(caller: SignedIn) -> Envelope[dict[str, int]]:
    """Mark every notification of the caller read; answers how many changed."""
    changed = await store.mark_read(caller.mongo, user_id=str(caller.user.id), notification_id=None)
    return ok({"marked": changed})
