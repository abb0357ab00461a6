"""What each event tells whom: one template per notification kind, as pure functions.

An event names the parties by id; `Context` adds what the event lacks (names, email addresses,
the project's title), read from PostgreSQL by the agent in one query (`parties_needed` says whose).
A template returns one `Notice` per recipient; `render` turns a notice into the three channels'
forms: the in-app title and body, an email (subject, text part, HTML part with every value
escaped) and a web push payload (title, body, url).

| event                                   | kind               | recipients                      |
|-----------------------------------------|--------------------|---------------------------------|
| user.registered                         | welcome            | the new user                    |
| bid.submitted                           | new_bid            | the project's client            |
| bid.accepted                            | bid_accepted       | the worker                      |
| booking.created                         | booking_created    | the worker                      |
| payment.completed                       | payment_completed  | the client and the worker       |
| payment.failed                          | payment_failed     | the client (the payer)          |
| project.delivered                       | delivered          | the client                      |
| project.status_changed delivered→in_progress | changes_requested | the worker                 |
| dispute.opened                          | dispute_opened     | the other party                 |
| dispute.resolved                        | dispute_resolved   | the client and the worker       |
| review.created                          | review_received    | the reviewee                    |
| message.sent                            | new_message        | each recipient who was offline  |
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Final, TypeVar

from pydantic import BaseModel, ValidationError

from streams.bookings import BookingCreated
from streams.disputes import DisputeOpened, DisputeResolved
from streams.events import Event, PoisonEvent
from streams.messages import MessageSent
from streams.payments import PaymentCompleted, PaymentFailed
from streams.projects import (
    BidAccepted,
    BidSubmitted,
    ProjectDeadlineApproaching,
    ProjectDelivered,
    ProjectStatusChanged,
)
from streams.reviews import ReviewCreated
from streams.users import UserRegistered

R = TypeVar("R", bound=BaseModel)

# Kind -> the category of the user's notification settings it belongs to (api/users/schemas.py
# NotificationSettings); None: no category, only the channel and per-kind switches apply.
CATEGORY: Final[dict[str, str | None]] = {
    "welcome": None,
    "new_bid": "bids",
    "bid_accepted": "bids",
    "booking_created": "projects",
    "payment_completed": "payments",
    "payment_failed": "payments",
    "delivered": "projects",
    "changes_requested": "projects",
    "dispute_opened": "projects",
    "dispute_resolved": "projects",
    "review_received": "reviews",
    "new_message": "messages",
    "deadline_reminder": "projects",
}
KINDS: Final = tuple(CATEGORY)
# A message preview longer than this is cut: a notification points to the message, not holds it.
PREVIEW_CHARS: Final = 140


@dataclass(frozen=True)
class Party:
    id: uuid.UUID
    name: str
    email: str
    role: str
    # The stored `user_settings.notifications` document (snake_case keys); {} when none.
    preferences: Mapping[str, object]


@dataclass(frozen=True)
class Context:
    """What the agent read for one event: the parties it names, and the project's title."""

    parties: Mapping[uuid.UUID, Party]
    project_title: str | None = None

    def name(self, user_id: uuid.UUID) -> str:
        party = self.parties.get(user_id)
        return party.name if party is not None else "Someone"

    @property
    def project(self) -> str:
        return f"“{self.project_title}”" if self.project_title else "your project"


@dataclass(frozen=True)
class Notice:
    """One notification to one user, before it takes a channel's form."""

    kind: str
    recipient_id: uuid.UUID
    title: str
    # Plain text: the in-app body, the push body and the email's main paragraph.
    body: str
    # A path of the web app the notification leads to.
    path: str
    action: str = "Open Tulifo Gig"


@dataclass(frozen=True)
class Rendered:
    notice: Notice
    subject: str
    text: str
    html: str
    push: dict[str, str]


def money(cents: int, currency: str) -> str:
    """1005, "USD" → "10.05 USD" (every currency we take has two decimals: api/money.py)."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}{whole:,}.{part:02d} {currency}"


def _parse(record: type[R], event: Event) -> R:
    try:
        return record.model_validate(event.data)
    except ValidationError as exc:
        raise PoisonEvent(f"{event.type} data invalid: {exc.error_count()} errors") from exc


# --- the templates, one per kind --------------------------------------------------------------

_NEXT_STEP = {
    "worker": "Complete your profile and skills so clients can find you, then bid on projects.",
    "client": "Post your first project and we will match it with the right workers.",
}
_DEFAULT_NEXT_STEP = "Complete your profile to get started."


def welcome(event: Event, ctx: Context) -> list[Notice]:
    user = _parse(UserRegistered, event)
    step = _NEXT_STEP.get(user.role, _DEFAULT_NEXT_STEP)
    return [
        Notice(
            "welcome",
            user.user_id,
            "Welcome to Tulifo Gig",
            f"Hi {user.name}, welcome aboard! {step}",
            "/profile",
            "Complete your profile",
        )
    ]


def new_bid(event: Event, ctx: Context) -> list[Notice]:
    bid = _parse(BidSubmitted, event)
    body = (
        f"{ctx.name(bid.worker_id)} bid {money(bid.amount_cents, bid.currency)} on "
        f"{ctx.project}, delivery in {bid.delivery_days} days."
    )
    return [
        Notice(
            "new_bid",
            bid.client_id,
            "New bid on your project",
            body,
            f"/projects/{bid.project_id}/bids",
            "Review the bids",
        )
    ]


def bid_accepted(event: Event, ctx: Context) -> list[Notice]:
    bid = _parse(BidAccepted, event)
    body = (
        f"{ctx.name(bid.client_id)} accepted your bid of "
        f"{money(bid.amount_cents, bid.currency)} on {ctx.project}."
    )
    return [
        Notice(
            "bid_accepted",
            bid.worker_id,
            "Your bid was accepted",
            body,
            f"/projects/{bid.project_id}",
            "Open the project",
        )
    ]


def booking_created(event: Event, ctx: Context) -> list[Notice]:
    booking = _parse(BookingCreated, event)
    body = (
        f"{ctx.name(booking.client_id)} booked you for {ctx.project} at "
        f"{money(booking.agreed_amount_cents, booking.currency)}; work starts once the payment "
        "is in escrow."
    )
    return [
        Notice(
            "booking_created",
            booking.worker_id,
            "You have a new booking",
            body,
            f"/projects/{booking.project_id}",
            "Open the booking",
        )
    ]


def payment_completed(event: Event, ctx: Context) -> list[Notice]:
    paid = _parse(PaymentCompleted, event)
    amount = money(paid.amount_cents, paid.currency)
    path = f"/projects/{paid.project_id}"
    return [
        Notice(
            "payment_completed",
            paid.client_id,
            "Payment received",
            f"Your payment of {amount} for {ctx.project} is held in escrow.",
            path,
            "Open the project",
        ),
        Notice(
            "payment_completed",
            paid.worker_id,
            "The project is funded",
            f"{amount} for {ctx.project} is held in escrow: you can start the work.",
            path,
            "Open the project",
        ),
    ]


def payment_failed(event: Event, ctx: Context) -> list[Notice]:
    failed = _parse(PaymentFailed, event)
    reason = f" ({failed.failure_message})" if failed.failure_message else ""
    body = (
        f"Your payment of {money(failed.amount_cents, failed.currency)} for {ctx.project} "
        f"did not go through{reason}. Please try again."
    )
    return [
        Notice(
            "payment_failed",
            failed.client_id,
            "Payment failed",
            body,
            f"/projects/{failed.project_id}",
            "Try the payment again",
        )
    ]


def delivered(event: Event, ctx: Context) -> list[Notice]:
    work = _parse(ProjectDelivered, event)
    body = (
        f"{ctx.name(work.worker_id)} delivered {ctx.project}. Accept the work to release "
        f"{money(work.agreed_amount_cents, work.currency)} from escrow, or ask for changes."
    )
    return [
        Notice(
            "delivered",
            work.client_id,
            "Work delivered",
            body,
            f"/projects/{work.project_id}",
            "Review the delivery",
        )
    ]


def changes_requested(event: Event, ctx: Context) -> list[Notice]:
    moved = _parse(ProjectStatusChanged, event)
    # Only the revision move (delivered → in_progress) is "changes requested"; the other moves
    # of this event type tell nobody anything.
    if moved.from_status != "delivered" or moved.to_status != "in_progress":
        return []
    if moved.worker_id is None:
        return []
    body = f"{ctx.name(moved.client_id)} asked for changes to {ctx.project}."
    return [
        Notice(
            "changes_requested",
            moved.worker_id,
            "Changes requested",
            body,
            f"/projects/{moved.project_id}",
            "Open the project",
        )
    ]


def dispute_opened(event: Event, ctx: Context) -> list[Notice]:
    dispute = _parse(DisputeOpened, event)
    parties = (dispute.client_id, dispute.worker_id)
    # The other party; if somebody else opened it (an admin), both parties.
    told = [p for p in parties if p != dispute.opened_by]
    body = (
        f"{ctx.name(dispute.opened_by)} opened a dispute about {ctx.project}: "
        f"“{dispute.reason}”. The escrow of {money(dispute.amount_cents, dispute.currency)} "
        "is frozen until an admin resolves it."
    )
    return [
        Notice(
            "dispute_opened",
            party,
            "A dispute was opened",
            body,
            f"/projects/{dispute.project_id}",
            "Open the dispute",
        )
        for party in told
    ]


_OUTCOME = {
    "release": "the escrow was released to the worker",
    "refund": "the escrow was refunded to the client",
    "split": "the escrow was split between you",
}


def dispute_resolved(event: Event, ctx: Context) -> list[Notice]:
    done = _parse(DisputeResolved, event)
    body = (
        f"The dispute about {ctx.project} is resolved: {_OUTCOME[done.resolution]} "
        f"(worker {money(done.worker_amount_cents, done.currency)}, client "
        f"{money(done.client_amount_cents, done.currency)})."
    )
    return [
        Notice(
            "dispute_resolved",
            party,
            "Dispute resolved",
            body,
            f"/projects/{done.project_id}",
            "Open the project",
        )
        for party in (done.client_id, done.worker_id)
    ]


def review_received(event: Event, ctx: Context) -> list[Notice]:
    review = _parse(ReviewCreated, event)
    body = f"{ctx.name(review.reviewer_id)} rated you {review.rating} of 5 for {ctx.project}."
    return [
        Notice(
            "review_received",
            review.reviewee_id,
            "You received a review",
            body,
            f"/users/{review.reviewee_id}/reviews",
            "Read the review",
        )
    ]


def new_message(event: Event, ctx: Context) -> list[Notice]:
    message = _parse(MessageSent, event)
    preview = " ".join(message.preview.split())
    if len(preview) > PREVIEW_CHARS:
        preview = preview[: PREVIEW_CHARS - 1] + "…"
    offline = set(message.offline_recipient_ids)
    return [
        Notice(
            "new_message",
            recipient,
            f"New message from {ctx.name(message.sender_id)}",
            preview or "You have a new message.",
            f"/messages/{message.conversation_id}",
            "Reply",
        )
        for recipient in message.recipient_ids
        if recipient in offline and recipient != message.sender_id
    ]


def deadline_reminder(event: Event, ctx: Context) -> list[Notice]:
    due = _parse(ProjectDeadlineApproaching, event)
    when = due.deadline.astimezone(UTC).strftime("%d %b %Y, %H:%M UTC")
    return [
        Notice(
            "deadline_reminder",
            party,
            "Deadline approaching",
            f"{ctx.project} is due on {when}.",
            f"/projects/{due.project_id}",
            "Open the project",
        )
        for party in (due.client_id, due.worker_id)
    ]


Template = Callable[[Event, Context], list[Notice]]

TEMPLATES: Final[dict[str, Template]] = {
    "user.registered": welcome,
    "bid.submitted": new_bid,
    "bid.accepted": bid_accepted,
    "booking.created": booking_created,
    "payment.completed": payment_completed,
    "payment.failed": payment_failed,
    "project.delivered": delivered,
    "project.status_changed": changes_requested,
    "dispute.opened": dispute_opened,
    "dispute.resolved": dispute_resolved,
    "review.created": review_received,
    "message.sent": new_message,
    "project.deadline_approaching": deadline_reminder,
}


def parties_needed(event: Event) -> tuple[list[uuid.UUID], uuid.UUID | None]:
    """Whose names, addresses and preferences the event's templates need, and its project (for
    the title): the uuid fields of its record that name users, read without validating it."""
    data = event.data
    users = []
    for field in (
        "user_id",
        "client_id",
        "worker_id",
        "reviewer_id",
        "reviewee_id",
        "opened_by",
        "sender_id",
    ):
        users.append(data.get(field))
    users.extend(data.get("recipient_ids") or [])
    ids: list[uuid.UUID] = []
    for value in users:
        try:
            user_id = uuid.UUID(str(value))
        except ValueError:
            continue
        if user_id not in ids:
            ids.append(user_id)
    try:
        project = uuid.UUID(str(data.get("project_id")))
    except ValueError:
        project = None
    return ids, project


# --- channel forms ----------------------------------------------------------------------------


def render(notice: Notice, recipient: Party, *, public_url: str) -> Rendered:
    """The notice as email and push; every value inside the HTML is escaped, since names,
    titles, reasons and message previews are typed by users."""
    link = public_url.rstrip("/") + notice.path
    text = (
        f"Hi {recipient.name},\n\n{notice.body}\n\n{notice.action}: {link}\n\nThe Tulifo Gig team\n"
    )
    e = html.escape
    page = (
        '<!doctype html>\n<html><body style="font-family: sans-serif; line-height: 1.5">\n'
        f"<p>Hi {e(recipient.name)},</p>\n"
        f"<p>{e(notice.body)}</p>\n"
        f'<p><a href="{e(link, quote=True)}">{e(notice.action)}</a></p>\n'
        "<p>The Tulifo Gig team</p>\n</body></html>\n"
    )
    return Rendered(
        notice=notice,
        subject=notice.title,
        text=text,
        html=page,
        push={"title": notice.title, "body": notice.body, "url": notice.path},
    )
