"""Creating the PaymentIntent that funds a booking's escrow hold.

Fee rule (api/money.py `platform_fee`, the only place it is computed): the client is charged
the agreed amount; the platform fee is 10% of it rounded half up to the cent; the worker gets
the rest. Capture is automatic: the money settles on the platform's balance at once and stays
there until release or refund. Manual capture would only hold an authorization, which card
networks void after about 7 days, shorter than most gigs.

No database connection is held while Stripe is called: a Stripe that hangs would otherwise hold
row locks and pooled connections for as long, and stall requests that never touch Stripe. So a
create is three steps (see `_create_or_fetch`): a short transaction that checks the booking and
claims the attempt (payment_intent_attempts, with its idempotency key) and commits; the Stripe
call with nothing held; a short transaction that records the payment, conditional on the claim
still being ours.

A declined card (payment_intent.payment_failed) fails the payment; the client's next call then
makes a new intent under a new idempotency key (`pi-{booking}-{n}`), once the failed one is
cancelled at Stripe, so the old client secret can no longer be paid as well. An intent no longer
offered (a retry replaced it, or its project was cancelled unpaid) is cancelled after the
transaction that stopped it commits (`cancel_intent`); if Stripe does not answer, the payment
keeps stripe_cancel = 'needed' for `retry_intent_cancellations`. Money is safe meanwhile: a
payment_intent.succeeded for a cancelled project's intent refunds it in full (webhooks.py).

Concurrent calls for one booking get one answer. In one API process they share one flight: the
first call's work, whose outcome (the intent, or the 503 of an unreachable Stripe) every caller
gets, so a burst of retries sends Stripe one request. A call in another process while a claim is
live gets a 409 INTENT_IN_PROGRESS with Retry-After; the retry gets the recorded intent.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable
from typing import Final

import asyncpg

from api.auth.schemas import AuthenticatedUser
from api.errors import Conflict, Forbidden, NotFound
from api.escrow import repository as escrow_repository
from api.money import SUPPORTED_CURRENCIES, charge_limit_problem, platform_fee
from api.payments import repository
from api.payments.provider import provider_error
from api.payments.schemas import CreateIntentRequest, IntentOut, PaymentStatus
from bridges.stripe import PaymentIntent, StripeFailure, StripeGateway
from infrastructure.database import unit_of_work

log = logging.getLogger(__name__)

# A client pays while the work can still happen or be accepted.
PAYABLE_PROJECT_STATUSES = frozenset({"awarded", "in_progress", "delivered"})
# A claim outlives its call's Stripe deadline by this much, so it is never taken over while the
# call can still record its intent.
CLAIM_MARGIN_SECONDS: Final = 5.0

# The flights in progress in this process, by (pool, booking): one per booking.
_flights: dict[tuple[asyncpg.Pool, uuid.UUID], asyncio.Task[tuple[IntentOut, bool]]] = {}


def intent_idempotency_key(booking_id: uuid.UUID) -> str:
    """Stripe answers a retry with this key with the intent the first attempt made."""
    return f"pi-{booking_id}"


def cancel_idempotency_key(intent_id: str) -> str:
    return f"pi-cancel-{intent_id}"


async def cancel_intent(
    *, pool: asyncpg.Pool, stripe: StripeGateway, payment_id: uuid.UUID, intent_id: str
) -> tuple[str, StripeFailure | None]:
    """Cancel a stopped payment's intent at Stripe and record the outcome: 'cancelled',
    'refused' (it was paid or is being paid: its webhook settles it), or 'needed' when Stripe
    did not answer (left for `retry_intent_cancellations`). Call it holding no connection."""
    failure: StripeFailure | None = None
    try:
        await stripe.cancel_payment_intent(
            intent_id, idempotency_key=cancel_idempotency_key(intent_id)
        )
        outcome = "cancelled"
    except StripeFailure as exc:
        failure = exc
        outcome = "needed"
        if not exc.retryable:
            # Refused: cancelled by someone else already (fine), or paid (not ours to stop).
            try:
                intent = await stripe.retrieve_payment_intent(intent_id)
                outcome = "cancelled" if intent.status == "canceled" else "refused"
            except StripeFailure as again:
                failure = again
    if outcome == "needed":
        log.warning("PaymentIntent %s not cancelled yet: %s; will retry", intent_id, failure)
    async with unit_of_work(pool) as conn:
        await repository.intent_cancel_outcome(
            conn,
            payment_id=payment_id,
            outcome=outcome,
            error=None if failure is None else (failure.code or str(failure)),
        )
    return outcome, (None if outcome == "cancelled" else failure)


async def retry_intent_cancellations(
    *, pool: asyncpg.Pool, stripe: StripeGateway, limit: int = 100
) -> int:
    """Cancel the intents a Stripe outage left uncancelled; how many are now settled."""
    async with pool.acquire() as conn:
        rows = await repository.intents_to_cancel(conn, limit=limit)
    settled = 0
    for row in rows:
        outcome, _ = await cancel_intent(
            pool=pool,
            stripe=stripe,
            payment_id=row["id"],
            intent_id=row["stripe_payment_intent_id"],
        )
        settled += outcome != "needed"
    return settled


async def create_intent(
    *,
    pool: asyncpg.Pool,
    stripe: StripeGateway,
    user: AuthenticatedUser,
    booking_id: uuid.UUID,
    stated: CreateIntentRequest | None = None,
) -> tuple[IntentOut, bool]:
    """The booking's PaymentIntent, made on the first call; (intent, created by this call).
    Terms the client `stated` (a seed client's payee, amount, currency) must be the booking's."""
    async with pool.acquire() as conn:
        booking = await repository.fetch_booking(conn, booking_id=booking_id)
    # Who may ask is decided per call, before joining another caller's flight.
    if booking is None:
        raise NotFound("booking not found")
    if booking["client_id"] != user.id:
        if booking["worker_id"] != user.id and user.role != "admin":
            raise NotFound("booking not found")  # outsiders learn nothing of which ids exist
        raise Forbidden("only the booking's client pays for it")
    if booking["escrow_id"] is None:
        raise Conflict("the booking has no escrow hold", code="NO_ESCROW")
    if stated is not None:
        stated.check_against(booking)

    key = (pool, booking_id)
    flight = _flights.get(key)
    leads = flight is None
    if flight is None:
        flight = asyncio.create_task(
            _create_or_fetch(pool=pool, stripe=stripe, booking_id=booking_id)
        )
        _flights[key] = flight
        flight.add_done_callback(lambda done: _land(key, done))
    # Shielded: a caller that goes away does not cancel the others' answer, nor leave a claim
    # to run out its lease.
    out, created = await asyncio.shield(flight)
    # Only the call that started the flight made the intent; the others were answered with it.
    return out, created and leads


def _land(
    key: tuple[asyncpg.Pool, uuid.UUID], flight: asyncio.Task[tuple[IntentOut, bool]]
) -> None:
    if _flights.get(key) is flight:
        del _flights[key]
    if not flight.cancelled():
        flight.exception()  # retrieved here, so a flight whose callers all left logs nothing


async def _create_or_fetch(
    *, pool: asyncpg.Pool, stripe: StripeGateway, booking_id: uuid.UUID
) -> tuple[IntentOut, bool]:
    """The booking's intent, and whether it was made now (else it was already recorded)."""
    claim_token = uuid.uuid4()
    async with unit_of_work(pool) as conn:
        booking, project, escrow = await _lock_payable(conn, booking_id=booking_id)
        split = platform_fee(escrow["amount_cents"])
        payment = await repository.fetch_payment_of_booking(conn, booking_id=booking_id)
        idempotency_key = None
        # The failed payment a retry replaces; its intent is cancelled before the new one.
        replaced = payment if payment is not None and payment["status"] == "failed" else None
        if replaced is not None:
            payment = None
        if payment is None:
            idempotency_key = await repository.claim_intent_attempt(
                conn,
                booking_id=booking_id,
                first_key=intent_idempotency_key(booking_id),
                claim_token=claim_token,
                lease_seconds=stripe.deadline_seconds + CLAIM_MARGIN_SECONDS,
            )
            if idempotency_key is None:
                retry_after = await repository.intent_claim_seconds_left(
                    conn, booking_id=booking_id
                )
                raise Conflict(
                    "another request is creating this booking's payment; try again shortly",
                    code="INTENT_IN_PROGRESS",
                    headers={"Retry-After": str(retry_after)},
                    details={"retryAfter": retry_after},
                )
            if replaced is not None:
                await repository.need_intent_cancel(conn, payment_id=replaced["id"])

    def out(intent: PaymentIntent, payment_id: uuid.UUID, status: PaymentStatus) -> IntentOut:
        return IntentOut(
            payment_id=payment_id,
            booking_id=booking_id,
            escrow_id=escrow["id"],
            payment_intent_id=intent.id,
            client_secret=intent.client_secret,
            amount_cents=split.amount_cents,
            fee_cents=split.fee_cents,
            net_cents=split.net_cents,
            currency=escrow["currency"],
            status=status,
        )

    if payment is not None:
        intent = await _stripe(stripe.retrieve_payment_intent(payment["stripe_payment_intent_id"]))
        return out(intent, payment["id"], payment["status"]), False

    assert idempotency_key is not None
    if replaced is not None and replaced["stripe_cancel"] != "cancelled":
        outcome, failure = await cancel_intent(
            pool=pool,
            stripe=stripe,
            payment_id=replaced["id"],
            intent_id=replaced["stripe_payment_intent_id"],
        )
        if outcome != "cancelled":
            # No new intent while the old one may still be paid: both could be.
            async with unit_of_work(pool) as conn:
                await repository.intent_attempt_failed(
                    conn,
                    booking_id=booking_id,
                    claim_token=claim_token,
                    refused=False,  # the new key was not used: the retry keeps it
                    error=f"previous intent not cancelled: {outcome}",
                )
            if outcome == "needed" and failure is not None:
                raise provider_error(failure)
            raise Conflict(
                "the previous payment attempt is being processed; try again shortly",
                code="PAYMENT_IN_PROGRESS",
                details={"paymentId": str(replaced["id"])},
            )
    try:
        intent = await stripe.create_payment_intent(
            amount_cents=split.amount_cents,
            currency=escrow["currency"],
            metadata={
                "booking_id": str(booking_id),
                "escrow_id": str(escrow["id"]),
                "project_id": str(project["id"]),
            },
            idempotency_key=idempotency_key,
        )
    except StripeFailure as exc:
        # Released at once so the next call tries again; kept if this fails too (the database
        # is gone), in which case the lease runs out. An outage leaves no payment row: nothing
        # waits on the booking but the claim, and the retry reuses its key.
        async with unit_of_work(pool) as conn:
            await repository.intent_attempt_failed(
                conn,
                booking_id=booking_id,
                claim_token=claim_token,
                refused=not exc.retryable,
                error=exc.code or str(exc),
            )
        raise provider_error(exc) from exc

    payment_id = uuid.uuid4()
    async with unit_of_work(pool) as conn:
        # The intent is recorded whatever happened meanwhile: its success webhook must find it
        # (a project cancelled in between is then refunded by that webhook).
        project = await escrow_repository.lock_project(conn, project_id=booking["project_id"])
        escrow = await escrow_repository.lock_escrow(conn, escrow_id=booking["escrow_id"])
        assert project is not None and escrow is not None
        created = await repository.insert_payment(
            conn,
            payment_id=payment_id,
            booking_id=booking_id,
            escrow_id=escrow["id"],
            project_id=project["id"],
            client_id=booking["client_id"],
            intent_id=intent.id,
            amount_cents=split.amount_cents,
            fee_cents=split.fee_cents,
            net_cents=split.net_cents,
            currency=escrow["currency"],
        )
        stopped = None
        if created:
            await repository.intent_attempt_created(
                conn, booking_id=booking_id, claim_token=claim_token, intent_id=intent.id
            )
            if project["status"] == "cancelled":
                # Cancelled while we were at Stripe: the intent is never offered, and is
                # cancelled below so it does not stay pending.
                stopped = await repository.stop_pending_payment(
                    conn,
                    booking_id=booking_id,
                    reason="project_cancelled",
                    message="the project was cancelled before it was paid",
                )
        recorded = await repository.fetch_payment_of_booking(conn, booking_id=booking_id)
    if stopped is not None:
        await cancel_intent(pool=pool, stripe=stripe, payment_id=stopped["id"], intent_id=intent.id)
    assert recorded is not None
    if not created:
        # Our lease ran out and another call recorded its intent first. With Stripe's
        # idempotency both are one intent; if not, ours is never shown to the client.
        if recorded["stripe_payment_intent_id"] != intent.id:
            log.warning(
                "booking %s: PaymentIntent %s made after the claim was taken over; unused",
                booking_id,
                intent.id,
            )
            intent = await _stripe(
                stripe.retrieve_payment_intent(recorded["stripe_payment_intent_id"])
            )
        return out(intent, recorded["id"], recorded["status"]), False
    # Cancelled while we were at Stripe: recorded above, but not offered for payment.
    _check_still_payable(project, escrow)
    return out(intent, payment_id, "pending"), True


async def _lock_payable(
    conn: asyncpg.Connection, *, booking_id: uuid.UUID
) -> tuple[asyncpg.Record, asyncpg.Record, asyncpg.Record]:
    """The booking, its project and hold, locked (project, then hold), once they may be paid."""
    booking = await repository.fetch_booking(conn, booking_id=booking_id)
    assert booking is not None and booking["escrow_id"] is not None  # checked by the caller
    project = await escrow_repository.lock_project(conn, project_id=booking["project_id"])
    escrow = await escrow_repository.lock_escrow(conn, escrow_id=booking["escrow_id"])
    assert project is not None and escrow is not None
    _check_still_payable(project, escrow)
    _check_payable_amount(escrow["amount_cents"], escrow["currency"])
    split = platform_fee(escrow["amount_cents"])
    if (split.fee_cents, split.net_cents) != (escrow["fee_cents"], escrow["net_cents"]):
        raise RuntimeError(f"escrow {escrow['id']} was not split by platform_fee")
    return booking, project, escrow


def _check_still_payable(project: asyncpg.Record, escrow: asyncpg.Record) -> None:
    if escrow["status"] != "unfunded":
        raise Conflict(
            f"the escrow for this booking is already {escrow['status']}",
            code="ESCROW_ALREADY_FUNDED",
            details={"escrowStatus": escrow["status"]},
        )
    if project["status"] not in PAYABLE_PROJECT_STATUSES:
        raise Conflict(
            f"the project is {project['status']}; it can no longer be paid for",
            code="PROJECT_NOT_PAYABLE",
            details={"projectStatus": project["status"]},
        )


async def _stripe(call: Awaitable[PaymentIntent]) -> PaymentIntent:
    try:
        return await call
    except StripeFailure as exc:
        raise provider_error(exc) from exc


def _check_payable_amount(amount_cents: int, currency: str) -> None:
    if currency not in SUPPORTED_CURRENCIES:
        raise Conflict(
            f"payments in {currency} are not supported",
            code="CURRENCY_NOT_SUPPORTED",
            details={"supported": sorted(SUPPORTED_CURRENCIES)},
        )
    problem = charge_limit_problem(amount_cents, currency)
    if problem is not None:
        raise Conflict(
            f"a card payment {problem}",
            code="AMOUNT_NOT_PAYABLE",
            details={"amountCents": amount_cents},
        )
