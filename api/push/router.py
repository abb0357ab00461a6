"""/api/notifications/push: the VAPID public key browsers subscribe with, and the caller's
subscriptions. Pushes themselves are sent by the notifications agent (bridges/webpush.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import Request, Response, status

from api.auth.dependencies import SignedIn
from api.envelope import Envelope, ok
from api.push.schemas import (
    PushSubscriptionIn,
    PushSubscriptionOut,
    UnsubscribeIn,
    VapidPublicKeyOut,
    endpoint_problem,
)
from api.routers import DomainRouter
from api.schemas import FieldProblem
from api.state import SettingsDep
from bridges.webpush import vapid_public_key
from infrastructure.mongo import MongoDatabase
from tables import push_subscriptions as store

router = DomainRouter(prefix="/notifications/push", tags=["notifications"])

# Kept as sent, for "your devices" lists; real User-Agent strings stay under ~300 characters.
MAX_USER_AGENT_CHARS = 512

# Databases whose indexes this process has made sure of (kept, so an id is never reused).
_indexed: list[MongoDatabase] = []


async def _ensure_indexes_once(db: MongoDatabase) -> None:
    if not any(known is db for known in _indexed):
        await store.ensure_indexes(db)
        _indexed.append(db)


@router.get("/vapid-public-key")
async def get_vapid_public_key(settings: SettingsDep) -> Envelope[VapidPublicKeyOut]:
    """The `applicationServerKey` for `pushManager.subscribe()` (base64url); no sign-in needed."""
    return ok(VapidPublicKeyOut(public_key=vapid_public_key(settings)))


@router.post("/subscriptions", status_code=status.HTTP_201_CREATED)
async def subscribe(
    body: PushSubscriptionIn, caller: SignedIn, request: Request
) -> Envelope[PushSubscriptionOut]:
    """Store the browser's subscription for the caller. Subscribing again is harmless; an
    endpoint another user had subscribed moves to the caller (the browser changed hands)."""
    problem = endpoint_problem(body.endpoint, production=caller.settings.is_production)
    if problem is not None:
        raise FieldProblem("endpoint", problem, "push_endpoint").as_invalid()
    await _ensure_indexes_once(caller.mongo)
    user_agent = request.headers.get("user-agent")
    await store.save_subscription(
        caller.mongo,
        user_id=str(caller.user.id),
        endpoint=body.endpoint,
        p256dh=body.keys.p256dh,
        auth=body.keys.auth,
        user_agent=user_agent[:MAX_USER_AGENT_CHARS] if user_agent else None,
        now=datetime.now(UTC),
    )
    return ok(PushSubscriptionOut(endpoint=body.endpoint))


@router.delete("/subscriptions", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def unsubscribe(body: UnsubscribeIn, caller: SignedIn) -> None:
    """Forget the caller's subscription at `endpoint`. Idempotent, and 204 whether or not there
    was one: another user's subscription is never touched, nor its existence told."""
    await store.delete_subscription(
        caller.mongo, user_id=str(caller.user.id), endpoint=body.endpoint
    )
