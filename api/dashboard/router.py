"""/api/dashboard: the caller's snapshot, and its live updates as Server-Sent Events.

`GET /api/dashboard/stream` is read with fetch() and a streaming body reader, the access token
in the Authorization header like every other request: EventSource cannot send that header, and a
token in the URL would end up in access logs and browser history. The stream is:

    event: snapshot          the caller's values now (the same body as GET /api/dashboard/snapshot)
    id: <event id>           then each live update the caller may see, as the live agent
    event: <type>            published it (agents/live.py): match.scored, rating.updated,
    data: {...}              escrow.*, bid.*, notification
    : keep-alive             every 15 s of silence, so proxies and the page know it is alive
    event: end               last, with why: revoked, expired, disconnected, lagging, shutdown

It is left out of the OpenAPI document: a contract tester reading it would wait forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Final

from fastapi import Depends, Request
from fastapi.responses import StreamingResponse

from api.auth.dependencies import SignedIn
from api.auth.schemas import AuthenticatedUser
from api.dashboard.hub import DashboardHub, End, Subscriber, hub_of, sse_frame
from api.dashboard.schemas import DashboardSnapshot
from api.dashboard.snapshot import build_snapshot, channels_of
from api.envelope import Envelope, ok
from api.routers import DomainRouter

router = DomainRouter(prefix="/dashboard", tags=["dashboard"])

# Comment lines in silence: under the 30-60 s idle timeouts of common proxies and load balancers.
KEEPALIVE_S: Final = 15.0
# How often a quiet stream looks whether its client is still there.
TICK_S: Final = 1.0

HubDep = Annotated[DashboardHub, Depends(hub_of)]


def token_expiry(user: AuthenticatedUser) -> datetime | None:
    """When the caller's access token expires: the stream ends then."""
    expires = user.token_expires_at
    return datetime.fromtimestamp(expires, UTC) if expires is not None else None


@router.get("/snapshot")
async def read_snapshot(caller: SignedIn) -> Envelope[DashboardSnapshot]:
    """The caller's dashboard values now: what a page shows before live updates arrive."""
    return ok(await build_snapshot(pool=caller.pool, mongo=caller.mongo, user=caller.user))


@router.get("/stream", include_in_schema=False)
async def stream(request: Request, caller: SignedIn, hub: HubDep) -> StreamingResponse:
    # Registered before the snapshot is read: an update committed after that read is queued,
    # not lost between the two (one seen twice is harmless: pages drop repeated ids).
    subscriber = await hub.open(
        channels=channels_of(caller.user),
        session_id=caller.user.session_id,
        expires_at=token_expiry(caller.user),
    )
    try:
        snapshot = await build_snapshot(pool=caller.pool, mongo=caller.mongo, user=caller.user)
    except BaseException:
        hub.leave(subscriber)
        raise
    first = sse_frame("snapshot", snapshot.model_dump(mode="json", by_alias=True))
    return StreamingResponse(
        _frames(request, hub, subscriber, first),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _frames(
    request: Request, hub: DashboardHub, subscriber: Subscriber, first: str
) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    try:
        yield first
        quiet_since = loop.time()
        while True:
            try:
                item = await asyncio.wait_for(subscriber.queue.get(), TICK_S)
            except TimeoutError:
                # Under uvicorn a closed connection shows only on the next write, which may be
                # 15 s away: ask, so a closed page's registration goes within a second.
                if await request.is_disconnected():
                    return
                if loop.time() - quiet_since >= KEEPALIVE_S:
                    quiet_since = loop.time()
                    yield ": keep-alive\n\n"
                continue
            if isinstance(item, End):
                yield sse_frame("end", {"reason": item.reason})
                return
            quiet_since = loop.time()
            yield item
    finally:
        hub.leave(subscriber)
