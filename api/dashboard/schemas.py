"""The dashboard's snapshot: the caller's current values, in the shapes the endpoints that own
them answer with (matches, bookings, billing, earnings, bids, notifications)."""

from __future__ import annotations

import uuid
from datetime import datetime

from api.bids.schemas import BidOut
from api.billing.earnings import Earnings
from api.billing.schemas import BillingSummary
from api.bookings.schemas import BookingItem
from api.disputes.schemas import DisputeItem
from api.matching.schemas import MatchPage
from api.notifications.router import NotificationOut
from api.schemas import ResponseModel


class NotificationsPanel(ResponseModel):
    unread_count: int
    latest: list[NotificationOut]


class ProjectMatches(ResponseModel):
    """One of the client's open projects and its best-matched workers."""

    project_id: uuid.UUID
    title: str
    status: str
    matches: MatchPage


class ClientPanels(ResponseModel):
    projects: list[ProjectMatches]
    # The client's bookings with their escrow hold's status, newest first.
    bookings: list[BookingItem]
    billing: BillingSummary


class RatingPanel(ResponseModel):
    # From the ratings agent's read model; None before a first review.
    average: float | None
    count: int


class WorkerBid(ResponseModel):
    project_title: str
    bid: BidOut


class WorkerPanels(ResponseModel):
    rating: RatingPanel
    earnings: Earnings
    bids: list[WorkerBid]
    bookings: list[BookingItem]


class EscrowTotals(ResponseModel):
    """Escrow holds of one currency in one status, platform-wide."""

    currency: str
    status: str
    holds: int
    amount_cents: int


class AdminPanels(ResponseModel):
    escrow: list[EscrowTotals]
    # Projects per status, platform-wide.
    projects: dict[str, int]
    open_disputes: list[DisputeItem]
    bookings: list[BookingItem]


class DashboardSnapshot(ResponseModel):
    user_id: uuid.UUID
    role: str
    generated_at: datetime
    notifications: NotificationsPanel
    # Exactly one of these three, by the caller's role.
    client: ClientPanels | None = None
    worker: WorkerPanels | None = None
    admin: AdminPanels | None = None
