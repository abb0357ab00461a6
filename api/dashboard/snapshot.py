"""The caller's current values, read the way the endpoints that own them read them: a stream
starts with this, and a page reloads it when it reconnects (the live feed is best effort).

Each panel calls the owning domain's service (or, for matching, its endpoint function, which
is where that domain keeps its query); only the admin's platform totals have no endpoint of
their own, and are two GROUP BYs over the write side's tables here.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Final

import asyncpg

from api.auth.schemas import AuthenticatedUser
from api.bids import service as bids
from api.billing import earnings as worker_earnings
from api.billing import service as billing
from api.bookings import service as bookings
from api.dashboard.schemas import (
    AdminPanels,
    ClientPanels,
    DashboardSnapshot,
    EscrowTotals,
    NotificationsPanel,
    ProjectMatches,
    RatingPanel,
    WorkerBid,
    WorkerPanels,
)
from api.disputes import service as disputes
from api.errors import NotFound
from api.matching.router import ranked_workers
from api.notifications.router import _out as notification_out
from api.projects import service as projects
from api.projects.repository import ProjectFilters
from api.users import service as users
from api.users.schemas import WorkerProfileOut
from infrastructure.mongo import MongoDatabase
from streams.topics import DASHBOARD_ADMIN_CHANNEL, dashboard_user_channel
from tables import notifications as notification_store

# A dashboard shows the recent and the open, not whole histories: the lists' own endpoints page
# through the rest.
PROJECTS: Final = 10
MATCHES_PER_PROJECT: Final = 5
BOOKINGS: Final = 10
BIDS: Final = 20
NOTIFICATIONS: Final = 5
DISPUTES: Final = 10

_ESCROW_TOTALS = """
SELECT currency, status, count(*) AS holds, coalesce(sum(amount_cents), 0)::bigint AS amount
  FROM escrow_holds GROUP BY currency, status ORDER BY currency, status"""
_PROJECTS_BY_STATUS = "SELECT status, count(*) AS n FROM projects GROUP BY status"


async def notifications_panel(mongo: MongoDatabase, user: AuthenticatedUser) -> NotificationsPanel:
    user_id = str(user.id)
    unread, latest = await asyncio.gather(
        notification_store.count_unread(mongo, user_id=user_id),
        notification_store.list_for_user(mongo, user_id=user_id, limit=NOTIFICATIONS),
    )
    return NotificationsPanel(
        unread_count=unread, latest=[notification_out(document) for document in latest]
    )


async def client_panels(pool: asyncpg.Pool, user: AuthenticatedUser) -> ClientPanels:
    mine = await projects.list_projects(
        pool=pool,
        viewer=user,
        filters=ProjectFilters(statuses=("open",), mine=True),
        cursor=None,
        limit=PROJECTS,
    )
    ranked = []
    for project in mine.items:
        page = await ranked_workers(
            pool=pool, user=user, project_id=project.id, limit=MATCHES_PER_PROJECT, cursor=None
        )
        ranked.append(
            ProjectMatches(
                project_id=project.id, title=project.title, status=project.status, matches=page
            )
        )
    booked = await bookings.list_bookings(
        pool=pool, user=user, escrow_status=None, cursor=None, limit=BOOKINGS
    )
    summary = await billing.summary(pool=pool, client_id=user.id)
    return ClientPanels(projects=ranked, bookings=booked.items, billing=summary)


async def worker_panels(pool: asyncpg.Pool, user: AuthenticatedUser) -> WorkerPanels:
    profile = await users.get_profile(pool=pool, user_id=user.id)
    if isinstance(profile, WorkerProfileOut):
        rating = RatingPanel(average=profile.rating_average, count=profile.rating_count)
    else:
        rating = RatingPanel(average=None, count=0)
    money = await worker_earnings.earnings(pool=pool, worker_id=user.id)
    mine = await projects.list_projects(
        pool=pool, viewer=user, filters=ProjectFilters(mine=True), cursor=None, limit=BIDS
    )
    offers: list[WorkerBid] = []
    for project in mine.items:
        try:
            page = await bids.list_bids(
                pool=pool, user=user, project_id=project.id, cursor=None, limit=1
            )
        except NotFound:
            continue  # gone from the worker's view since the list was read
        offers.extend(WorkerBid(project_title=project.title, bid=bid) for bid in page.items)
    booked = await bookings.list_bookings(
        pool=pool, user=user, escrow_status=None, cursor=None, limit=BOOKINGS
    )
    return WorkerPanels(rating=rating, earnings=money, bids=offers, bookings=booked.items)


async def admin_panels(pool: asyncpg.Pool, user: AuthenticatedUser) -> AdminPanels:
    async with pool.acquire() as conn:
        totals = await conn.fetch(_ESCROW_TOTALS)
        statuses = await conn.fetch(_PROJECTS_BY_STATUS)
    queue = await disputes.list_disputes(pool=pool, status="open", cursor=None, limit=DISPUTES)
    booked = await bookings.list_bookings(
        pool=pool, user=user, escrow_status=None, cursor=None, limit=BOOKINGS
    )
    return AdminPanels(
        escrow=[
            EscrowTotals(
                currency=row["currency"],
                status=row["status"],
                holds=row["holds"],
                amount_cents=row["amount"],
            )
            for row in totals
        ],
        projects={row["status"]: row["n"] for row in statuses},
        open_disputes=queue.items,
        bookings=booked.items,
    )


async def build_snapshot(
    *, pool: asyncpg.Pool, mongo: MongoDatabase, user: AuthenticatedUser
) -> DashboardSnapshot:
    """Everything the caller's dashboard shows, as of now."""
    snapshot = DashboardSnapshot(
        user_id=user.id,
        role=user.role,
        generated_at=datetime.now(UTC),
        notifications=await notifications_panel(mongo, user),
    )
    if user.role == "client":
        snapshot.client = await client_panels(pool, user)
    elif user.role == "worker":
        snapshot.worker = await worker_panels(pool, user)
    elif user.role == "admin":
        snapshot.admin = await admin_panels(pool, user)
    return snapshot


def channels_of(user: AuthenticatedUser) -> list[str]:
    """What the caller's stream listens to: their own channel; admins the admins' too."""
    own = [dashboard_user_channel(user.id)]
    return [*own, DASHBOARD_ADMIN_CHANNEL] if user.role == "admin" else own
