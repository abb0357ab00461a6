"""What a verified Stripe event does. Each event is entered in the `stripe_events` ledger in the
same transaction as its effect: a redelivery (Stripe delivers at least once) changes nothing.

    payment_intent.succeeded       payment succeeded, escrow funded (payment.completed,
                                   escrow.funded); if the project was cancelled meanwhile the
                                   money goes straight back (escrow.refunded)
    payment_intent.payment_failed  payment failed with Stripe's reason (payment.failed)
    charge.refunded                refunds made outside the API are recorded; a full one
                                   refunds a funded hold (escrow.refunded, reason external)
    anything else                  acknowledged and ignored
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

from api.escrow import refunds, settlement
from api.escrow import repository as escrow_repository
from api.escrow.service import finish_cancelled_payment_refund, settle_refund
from api.payments import repository
from api.payments.schemas import WebhookAck
from bridges.outbox import append_event
from bridges.stripe import StripeGateway
from infrastructure.database import unit_of_work
from streams.escrow import EscrowFunded
from streams.events import new_event
from streams.payments import PaymentCompleted, PaymentFailed

log = logging.getLogger(__name__)

Outcome = Literal["applied", "ignored", "rejected"]


@dataclass(frozen=True)
class Effect:
    outcome: Outcome
    note: str | None = None
    payment_id: uuid.UUID | None = None
    # A hold whose refund this event pinned: made at Stripe once the event's transaction commits.
    refund_escrow_id: uuid.UUID | None = None


Handler = Callable[[asyncpg.Connection, StripeGateway, dict[str, Any]], Awaitable[Effect]]


async def handle_event(
    *, pool: asyncpg.Pool, stripe: StripeGateway, event: dict[str, Any]
) -> WebhookAck:
    """Apply a verified event once.

    An automatic refund (a payment that landed for a cancelled project) is pinned in the event's
    transaction and made at Stripe after it commits, holding nothing (api/escrow/refunds.py). If
    Stripe does not answer, the answer is a 503, so Stripe delivers the event again: the
    redelivery is a duplicate for the ledger, and finishes the pinned refund."""
    event_id: str = event["id"]
    async with unit_of_work(pool) as conn:
        if not await repository.claim_stripe_event(
            conn, event_id=event_id, event_type=event["type"]
        ):
            effect = None
            pinned = await _pinned_refund(conn, event)
        else:
            handler = _HANDLERS.get(event["type"])
            if handler is None:
                effect = Effect("ignored", f"event type {event['type']} is not handled")
            else:
                effect = await _apply(handler, conn, stripe, event)
            await repository.settle_stripe_event(
                conn,
                event_id=event_id,
                outcome=effect.outcome,
                note=effect.note,
                payment_id=effect.payment_id,
            )
            pinned = effect.refund_escrow_id
    if pinned is not None:
        await settle_refund(
            pool=pool, stripe=stripe, escrow_id=pinned, finish=finish_cancelled_payment_refund
        )
    if effect is None:
        return WebhookAck(event_id=event_id, outcome="duplicate")
    return WebhookAck(event_id=event_id, outcome=effect.outcome, note=effect.note)


async def _pinned_refund(conn: asyncpg.Connection, event: dict[str, Any]) -> uuid.UUID | None:
    """The hold whose automatic refund a first delivery of this event pinned and did not make
    (Stripe was down): the redelivery makes it."""
    if event["type"] != "payment_intent.succeeded":
        return None
    intent_id = event["data"]["object"].get("id")
    if not isinstance(intent_id, str):
        return None
    escrow_id: uuid.UUID | None = await conn.fetchval(
        """SELECT c.escrow_id FROM refund_claims c JOIN payments p ON p.id = c.payment_id
            WHERE p.stripe_payment_intent_id = $1 AND c.status = 'pending'
              AND c.purpose = 'cancelled_payment'""",
        intent_id,
    )
    return escrow_id


class Malformed(Exception):
    """A signed event whose object is not what Stripe sends for its type."""


async def _apply(
    handler: Handler, conn: asyncpg.Connection, stripe: StripeGateway, event: dict[str, Any]
) -> Effect:
    """Run `handler` in a savepoint: an event it cannot read changes nothing but its ledger
    entry (answered 200, so Stripe does not redeliver what will never apply)."""
    try:
        async with conn.transaction():
            return await handler(conn, stripe, event["data"]["object"])
    except (Malformed, KeyError, TypeError, ValueError, AttributeError) as exc:
        note = f"malformed {event['type']}: {exc}"
        log.warning("stripe event %s rejected: %s", event["id"], note)
        return Effect("rejected", note[:500])


def _cents(value: Any, what: str) -> int:
    """An amount Stripe gives in minor units: a non-negative integer, or Malformed."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise Malformed(f"{what} is {value!r}, not a whole number of cents")
    return value


async def _intent_succeeded(
    conn: asyncpg.Connection, stripe: StripeGateway, intent: dict[str, Any]
) -> Effect:
    found = await repository.fetch_payment_by_intent(conn, intent_id=str(intent.get("id")))
    if found is None:
        return Effect("ignored", "no payment of ours has this PaymentIntent")
    project = await escrow_repository.lock_project(conn, project_id=found["project_id"])
    escrow = await escrow_repository.lock_escrow(conn, escrow_id=found["escrow_id"])
    payment = await repository.lock_payment(conn, payment_id=found["id"])
    assert project is not None and escrow is not None
    if payment["status"] == "succeeded":
        return Effect("ignored", "the payment already succeeded", payment["id"])
    problem = _mismatch(intent, payment) or _not_fundable(escrow)
    if problem is not None:
        log.warning("payment %s not funded: %s", payment["id"], problem)
        await repository.record_anomaly(conn, payment_id=payment["id"], note=problem)
        return Effect("rejected", problem, payment["id"])

    await repository.mark_succeeded(conn, payment_id=payment["id"], charge_id=_charge_id(intent))
    await escrow_repository.move_hold(
        conn, escrow_id=escrow["id"], source="unfunded", target="funded", actor="system"
    )
    amounts = {
        "amount_cents": payment["amount_cents"],
        "fee_cents": payment["fee_cents"],
        "net_cents": payment["net_cents"],
        "currency": payment["currency"],
    }
    completed = PaymentCompleted(
        payment_id=payment["id"],
        booking_id=payment["booking_id"],
        escrow_id=escrow["id"],
        project_id=project["id"],
        client_id=payment["client_id"],
        worker_id=escrow["worker_id"],
        stripe_payment_intent_id=payment["stripe_payment_intent_id"],
        **amounts,
    )
    funded = EscrowFunded(
        escrow_id=escrow["id"],
        booking_id=escrow["booking_id"],
        project_id=project["id"],
        client_id=escrow["client_id"],
        worker_id=escrow["worker_id"],
        payment_id=payment["id"],
        **amounts,
    )
    for record in (completed, funded):
        await append_event(conn, new_event(record, aggregate_id=project["id"]))

    if project["status"] != "cancelled":
        return Effect("applied", None, payment["id"])
    # The client paid for a project cancelled while the payment was in flight: nothing can be
    # delivered for it, so the money goes straight back, in full. Pinned here, made at Stripe
    # once this transaction commits (handle_event).
    funded_now = await escrow_repository.lock_escrow(conn, escrow_id=escrow["id"])
    await refunds.claim_refund(
        conn,
        escrow=funded_now,
        purpose="cancelled_payment",
        amount_cents=escrow["amount_cents"],
        actor_id=None,
    )
    return Effect(
        "applied",
        "the project was cancelled: refunded in full",
        payment["id"],
        refund_escrow_id=escrow["id"],
    )


async def _intent_failed(
    conn: asyncpg.Connection, stripe: StripeGateway, intent: dict[str, Any]
) -> Effect:
    found = await repository.fetch_payment_by_intent(conn, intent_id=str(intent.get("id")))
    if found is None:
        return Effect("ignored", "no payment of ours has this PaymentIntent")
    payment = await repository.lock_payment(conn, payment_id=found["id"])
    if payment["status"] == "succeeded":
        # Events arrive in any order: a failed attempt reported after the success is history.
        return Effect("ignored", "the payment already succeeded", payment["id"])
    if payment["status"] == "failed":
        # Recorded already, by this webhook's earlier delivery under another event id or by the
        # reconciliation sweep (api/jobs/kinds.py): the client was told once.
        return Effect("ignored", "the payment already failed", payment["id"])
    error = intent.get("last_payment_error") or {}
    code = error.get("decline_code") or error.get("code")
    message = error.get("message")
    await repository.mark_failed(
        conn, payment_id=payment["id"], failure_code=code, failure_message=message
    )
    failed = PaymentFailed(
        payment_id=payment["id"],
        booking_id=payment["booking_id"],
        escrow_id=payment["escrow_id"],
        project_id=payment["project_id"],
        client_id=payment["client_id"],
        amount_cents=payment["amount_cents"],
        currency=payment["currency"],
        stripe_payment_intent_id=payment["stripe_payment_intent_id"],
        failure_code=code,
        failure_message=message,
    )
    await append_event(conn, new_event(failed, aggregate_id=payment["project_id"]))
    return Effect("applied", None, payment["id"])


async def _charge_refunded(
    conn: asyncpg.Connection, stripe: StripeGateway, charge: dict[str, Any]
) -> Effect:
    found = await repository.fetch_payment_by_intent(
        conn, intent_id=str(charge.get("payment_intent"))
    )
    if found is None:
        return Effect("ignored", "no payment of ours has this charge")
    await escrow_repository.lock_project(conn, project_id=found["project_id"])
    escrow = await escrow_repository.lock_escrow(conn, escrow_id=found["escrow_id"])
    payment = await repository.lock_payment(conn, payment_id=found["id"])
    assert escrow is not None

    # Our own refunds are recorded with their Stripe id once Stripe made them. One made but not
    # recorded yet (its claim is pending: api/escrow/refunds.py) is recorded by its own finishing
    # transaction, so it is left out here. What is left is what someone refunded outside the API.
    claim = await refunds.pending_claim(conn, escrow_id=escrow["id"])
    listed = (charge.get("refunds") or {}).get("data") or []
    if not isinstance(listed, list):
        raise Malformed("refunds.data is not a list")
    pending = [
        refund
        for refund in listed
        if claim is not None and isinstance(refund, dict) and _ours(refund, escrow["id"])
    ]
    refunds_seen = [
        (str(refund["id"]), _cents(refund.get("amount"), f"refund {refund.get('id')}'s amount"))
        for refund in listed
        if isinstance(refund, dict)
        and refund.get("status") not in ("failed", "canceled")
        and not any(refund is mine for mine in pending)
    ]
    stripe_total = charge.get("amount_refunded")
    if stripe_total is not None:
        stripe_total = _cents(stripe_total, "amount_refunded")
        if claim is not None and stripe_total >= claim["amount_cents"]:
            # The running total may already count the pinned refund: it is not external.
            stripe_total -= claim["amount_cents"]
    # Checked before anything is written: refunds of more than was paid are not Stripe's.
    paid = payment["amount_cents"]
    refunded = max(sum(cents for _, cents in refunds_seen), stripe_total or 0)
    if refunded > paid:
        raise Malformed(f"refunds of {refunded} cents, above the payment's {paid}")

    new_cents, last_refund_id = 0, None
    for stripe_refund_id, amount_cents in refunds_seen:
        refund_id = uuid.uuid4()
        if await escrow_repository.insert_refund(
            conn,
            refund_id=refund_id,
            payment_id=payment["id"],
            escrow_id=escrow["id"],
            stripe_refund_id=stripe_refund_id,
            amount_cents=amount_cents,
            currency=payment["currency"],
            reason="external",
            dispute_id=None,
            created_by=None,
        ):
            new_cents, last_refund_id = new_cents + amount_cents, refund_id
    # Recent API versions leave the refund list out of the charge: its running total still
    # tells how much is unaccounted for.
    recorded = await escrow_repository.refunded_total(conn, payment_id=payment["id"])
    if stripe_total is not None and stripe_total > recorded:
        refund_id = uuid.uuid4()
        await escrow_repository.insert_refund(
            conn,
            refund_id=refund_id,
            payment_id=payment["id"],
            escrow_id=escrow["id"],
            stripe_refund_id=None,
            amount_cents=stripe_total - recorded,
            currency=payment["currency"],
            reason="external",
            dispute_id=None,
            created_by=None,
        )
        new_cents, last_refund_id = new_cents + stripe_total - recorded, refund_id
        recorded = stripe_total
    if last_refund_id is None:
        return Effect("ignored", "every refund of this charge is already recorded", payment["id"])

    note = f"recorded {new_cents} cents refunded outside the API"
    if recorded >= payment["amount_cents"] and escrow["status"] == "funded":
        await escrow_repository.move_hold(
            conn, escrow_id=escrow["id"], source="funded", target="refunded", actor="system"
        )
        await settlement.append_refunded(
            conn,
            escrow=escrow,
            refund_id=last_refund_id,
            amount_cents=escrow["amount_cents"],
            reason="external",
            dispute_id=None,
            actor_id=None,
        )
        note += "; the hold is fully refunded"
    elif escrow["status"] in ("funded", "frozen"):
        # A partial refund behind the platform's back: the hold keeps its status; support
        # decides (the note is on the ledger entry).
        log.warning("escrow %s partially refunded outside the API", escrow["id"])
        note += "; the hold still shows its full amount, review it"
    return Effect("applied", note, payment["id"])


def _ours(refund: dict[str, Any], escrow_id: uuid.UUID) -> bool:
    """A refund our API made for this hold (api/escrow/refunds.py sets this metadata)."""
    metadata = refund.get("metadata")
    return (
        isinstance(metadata, dict)
        and metadata.get("escrow_id") == str(escrow_id)
        and metadata.get("reason") in ("cancellation", "dispute")
    )


def _mismatch(intent: dict[str, Any], payment: asyncpg.Record) -> str | None:
    amount = intent.get("amount_received", intent.get("amount"))
    currency = str(intent.get("currency", "")).upper()
    if amount != payment["amount_cents"] or currency != payment["currency"]:
        return (
            f"Stripe reports {amount} {currency}, the payment is "
            f"{payment['amount_cents']} {payment['currency']}"
        )
    return None


def _not_fundable(escrow: asyncpg.Record) -> str | None:
    if escrow["status"] != "unfunded":
        return f"the escrow hold is {escrow['status']}, not unfunded"
    return None


def _charge_id(intent: dict[str, Any]) -> str | None:
    # An id string in the API; localstripe expands it into the charge object.
    charge = intent.get("latest_charge")
    if isinstance(charge, dict):
        charge = charge.get("id")
    return charge if isinstance(charge, str) else None


_HANDLERS: dict[str, Handler] = {
    "payment_intent.succeeded": _intent_succeeded,
    "payment_intent.payment_failed": _intent_failed,
    "charge.refunded": _charge_refunded,
}
