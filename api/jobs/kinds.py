"""What each kind of scheduled job does when its time comes (run by bridges/jobs.py).

Every kind is idempotent: a job may run more than once (a runner killed after the work but
before marking the job done; an admin retrying it), and the second run must change nothing. Each
leans on a write side that already refuses to apply twice: a release moves the hold only from
'funded', a Stripe event is applied once per payment status, a pinned refund is settled once.

    auto_release         the client left a delivery unanswered for the review window: release
                         the escrow for them (api/escrow/service.py)
    reconcile_payments   periodic: PaymentIntents still pending a while after their creation are
                         asked about at Stripe; a success or a failed attempt whose webhook never
                         came is applied by the webhook's own code (api/payments/webhooks.py)
    retry_pending_refunds periodic: refunds a Stripe outage left pinned are made
                         (api/escrow/refunds.py)
    bid_expiry           a bid still pending `bid_expiry_seconds` after its submission expires
                         (api/bids/service.py)
    deadline_reminder    `deadline_reminder_seconds` before an awarded project's deadline, both
                         parties are told (api/jobs/reminders.py)
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import asyncpg
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from api.bids.service import expire_bid
from api.escrow.refunds import retry_pending_refunds
from api.escrow.service import release_after_review_window
from api.jobs.reminders import remind_of_deadline
from api.payments.webhooks import handle_event
from bridges.stripe import PaymentIntent, StripeFailure, StripeGateway
from infrastructure.settings import Settings
from tables.jobs import Job

log = logging.getLogger(__name__)

AUTO_RELEASE: Final = "auto_release"
BID_EXPIRY: Final = "bid_expiry"
DEADLINE_REMINDER: Final = "deadline_reminder"
RECONCILE_PAYMENTS: Final = "reconcile_payments"
RETRY_PENDING_REFUNDS: Final = "retry_pending_refunds"
# The subject of a periodic job: there is one of each.
PERIODIC_SUBJECT: Final = "periodic"
PERIODIC_KINDS: Final = (RECONCILE_PAYMENTS, RETRY_PENDING_REFUNDS)

# An intent nobody paid in a week is abandoned: not asked about again on every sweep.
RECONCILE_HORIZON: Final = timedelta(days=7)
RECONCILE_BATCH: Final = 100


class PermanentJobError(Exception):
    """This job can never succeed as it is (its payload is wrong): dead at once, with this."""


@dataclass(frozen=True)
class JobWork:
    """What the job kinds use; made once per runner process."""

    settings: Settings
    pool: asyncpg.Pool
    stripe: StripeGateway


Work = Callable[[JobWork, Job], Awaitable[str | None]]


class AutoReleasePayload(BaseModel):
    """Stored camelCase, as every document of ours in MongoDB."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, alias_generator=to_camel)

    project_id: uuid.UUID
    delivery_event_id: uuid.UUID


def _payload(model: type[BaseModel], job: Job) -> Any:
    try:
        return model.model_validate(job.payload)
    except ValidationError as exc:
        raise PermanentJobError(f"the {job.kind} payload is not valid: {exc}") from exc


async def auto_release(work: JobWork, job: Job) -> str | None:
    payload: AutoReleasePayload = _payload(AutoReleasePayload, job)
    skipped = await release_after_review_window(
        pool=work.pool, project_id=payload.project_id, delivery_event_id=payload.delivery_event_id
    )
    return f"nothing to release: {skipped}" if skipped else "released to the worker"


class BidExpiryPayload(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, alias_generator=to_camel)

    project_id: uuid.UUID
    bid_id: uuid.UUID


async def bid_expiry(work: JobWork, job: Job) -> str | None:
    payload: BidExpiryPayload = _payload(BidExpiryPayload, job)
    kept = await expire_bid(pool=work.pool, project_id=payload.project_id, bid_id=payload.bid_id)
    return f"not expired: {kept}" if kept else "expired"


class DeadlinePayload(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, alias_generator=to_camel)

    project_id: uuid.UUID
    deadline: datetime


async def deadline_reminder(work: JobWork, job: Job) -> str | None:
    payload: DeadlinePayload = _payload(DeadlinePayload, job)
    skipped = await remind_of_deadline(
        pool=work.pool, project_id=payload.project_id, deadline=payload.deadline
    )
    return f"no reminder: {skipped}" if skipped else "reminded"


_STALE_INTENTS = """
SELECT p.stripe_payment_intent_id, p.status
  FROM payments p JOIN escrow_holds e ON e.id = p.escrow_id
 WHERE p.status <> 'succeeded' AND e.status = 'unfunded'
   AND p.created_at < now() - make_interval(secs => $1)
   AND p.created_at > now() - make_interval(secs => $2)
 ORDER BY p.created_at
 LIMIT $3
"""


def stripe_event_for(intent: PaymentIntent) -> dict[str, Any]:
    """The `payment_intent.succeeded` Stripe would have sent for `intent`, for the webhook's own
    code. Its id is ours and fixed per intent, so the webhook ledger takes it once; a real
    webhook arriving later finds the payment succeeded and changes nothing."""
    return _synthetic_event(f"reconcile_{intent.id}", "payment_intent.succeeded", intent)


def failure_event_for(intent: PaymentIntent) -> dict[str, Any]:
    """The `payment_intent.payment_failed` Stripe would have sent for `intent`'s latest failed
    attempt. Its id names the attempt (the charge, else the payment method), so the ledger takes
    each failure once and a later attempt's failure is not mistaken for it."""
    error = intent.last_payment_error or {}
    attempt = error.get("charge") or _id_of(error.get("payment_method")) or error.get("code")
    return _synthetic_event(
        f"reconcile_failed_{intent.id}_{attempt}", "payment_intent.payment_failed", intent
    )


def _id_of(value: Any) -> Any:
    return value.get("id") if isinstance(value, dict) else value


def _synthetic_event(event_id: str, event_type: str, intent: PaymentIntent) -> dict[str, Any]:
    succeeded = intent.status == "succeeded"
    return {
        "id": event_id,
        "type": event_type,
        "data": {
            "object": {
                "id": intent.id,
                "object": "payment_intent",
                "status": intent.status,
                "amount": intent.amount_cents,
                "amount_received": intent.amount_cents if succeeded else 0,
                "currency": intent.currency.lower(),
                "last_payment_error": intent.last_payment_error,
            }
        },
    }


def lost_webhook(intent: PaymentIntent, our_status: str) -> dict[str, Any] | None:
    """The event Stripe sent for `intent` that our side evidently never got, or None: a success
    we have not recorded, or a failed attempt on a payment we still think pending (one we marked
    failed already is the client's to retry, with a new intent)."""
    if intent.status == "succeeded":
        return stripe_event_for(intent)
    if (
        intent.status == "requires_payment_method"
        and intent.last_payment_error
        and our_status == "pending"
    ):
        return failure_event_for(intent)
    return None  # not paid (yet): the client may still pay; asked again next sweep


async def reconcile_payments(work: JobWork, job: Job) -> str | None:
    """Ask Stripe about every intent still unpaid on our side after the reconcile delay."""
    rows = await work.pool.fetch(
        _STALE_INTENTS,
        work.settings.payment_reconcile_after_seconds,
        RECONCILE_HORIZON.total_seconds(),
        RECONCILE_BATCH,
    )
    applied = 0
    failures: list[str] = []
    for row in rows:
        intent_id: str = row["stripe_payment_intent_id"]
        try:
            intent = await work.stripe.retrieve_payment_intent(intent_id)
            event = lost_webhook(intent, row["status"])
            if event is None:
                continue
            ack = await handle_event(pool=work.pool, stripe=work.stripe, event=event)
        except StripeFailure as exc:
            if exc.retryable:  # Stripe unreachable: the sweep is retried with backoff
                failures.append(f"{intent_id}: {exc}")
            else:  # Stripe refuses to say (an intent it does not know): asking again won't help
                log.error("PaymentIntent %s cannot be reconciled: %s", intent_id, exc)
            continue
        except Exception as exc:  # one intent's trouble does not stop the others
            failures.append(f"{intent_id}: {type(exc).__name__}: {exc}")
            continue
        log.warning(
            "PaymentIntent %s %s without its webhook: %s", intent_id, intent.status, ack.outcome
        )
        applied += ack.outcome == "applied"
    if failures:
        raise RuntimeError(f"{len(failures)} of {len(rows)} intents not reconciled: {failures}")
    return f"{len(rows)} intents asked about, {applied} applied"


async def retry_refunds(work: JobWork, job: Job) -> str | None:
    settled = await retry_pending_refunds(pool=work.pool, stripe=work.stripe)
    return f"{settled} refunds settled"


KINDS: Final[Mapping[str, Work]] = {
    AUTO_RELEASE: auto_release,
    BID_EXPIRY: bid_expiry,
    DEADLINE_REMINDER: deadline_reminder,
    RECONCILE_PAYMENTS: reconcile_payments,
    RETRY_PENDING_REFUNDS: retry_refunds,
}
