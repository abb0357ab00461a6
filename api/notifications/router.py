"""In-app notifications (seed: `GET /api/notifications`), read from the MongoDB the agents fill."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from api.auth.dependencies import CurrentUser
from api.envelope import Envelope, ok
from api.errors import NotFound
from api.pagination import instant_param
from api.schemas import ApiModel
from api.state import MongoDep
from tables import notifications as store

router = APIRouter(prefix="/notifications", tags=["notifications"])

MAX_PAGE = 100


class NotificationOut(ApiModel):
    id: str
    type: str
    title: str
    body: str
    read: bool
    created_at: datetime


class NotificationPage(ApiModel):
    items: list[NotificationOut]
    unread_count: int
    # Pass as `before` to get the next (older) page; null on the last page.
    next_before: datetime | None


def _out(document: dict[str, Any]) -> NotificationOut:
    return NotificationOut(
        id=document["_id"],
        type=document.get("type", ""),
        title=document.get("title", ""),
        body=document.get("body", ""),
        read=bool(document.get("read", False)),
        created_at=document["createdAt"],
    )


@router.get("", response_model=Envelope[NotificationPage])
async def list_notifications(
    user: CurrentUser,
    db: MongoDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    before: Annotated[datetime | None, Query(description="nextBefore of the previous page")] = None,
    unread_only: Annotated[bool, Query(alias="unreadOnly")] = False,
) -> Envelope[NotificationPage]:
    """The caller's notifications, newest first."""
    user_id = str(user.id)
    documents = await store.list_for_user(
        db,
        user_id=user_id,
        limit=limit + 1,
        before=instant_param(before, field="before"),
        unread_only=unread_only,
    )
    page = documents[:limit]
    next_before = page[-1]["createdAt"] if len(documents) > limit else None
    unread = await store.count_unread(db, user_id=user_id)
    return ok(
        NotificationPage(
            items=[_out(d) for d in page], unread_count=unread, next_before=next_before
        )
    )


@router.post("/{notification_id}/read", response_model=Envelope[dict[str, bool]])
async def mark_read(
    user: CurrentUser,
    db: MongoDep,
    notification_id: Annotated[str, Path(max_length=128)],
) -> Envelope[dict[str, bool]]:
    """Mark one of the caller's notifications read (idempotent)."""
    user_id = str(user.id)
    if not await store.exists_for_user(db, user_id=user_id, notification_id=notification_id):
        raise NotFound("no such notification")
    await store.mark_read(db, user_id=user_id, notification_id=notification_id)
    return ok({"read": True})


@router.post("/read-all", response_model=Envelope[dict[str, int]])
async def mark_all_read(user: CurrentUser, db: MongoDep) -> Envelope[dict[str, int]]:
    """Mark every notification of the caller read; answers how many changed."""
    changed = await store.mark_read(db, user_id=str(user.id), notification_id=None)
    return ok({"marked": changed})
