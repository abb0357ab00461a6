"""Creating the PaymentIntent that funds a booking's escrow hold.

Fee rule (api/money.py `platform_fee`, the only place it is computed): the client is charged
the agreed amount; the platform fee is 10% of it rounded half up to the cent; the worker gets
the rest. Capture is automatic: the money settles on the platform's balance at once and stays
there until release or refund. Manual capture would only hold an authorization, which card
networks void after about 7 days, shorter than most gigs.
"""

from __future__ import annotations

import uuid

import asyncpg

from api.auth.schemas import AuthenticatedUser
from api.errors import Conflict, Forbidden, NotFound
from api.escrow import repository as escrow_repository
from api.money import MAX_AMOUNT_CENTS, MIN_AMOUNT_CENTS, SUPPORTED_CURRENCIES, platform_fee
from api.payments import repository
from api.payments.provider import provider_error
from api.payments.schemas import IntentOut, PaymentStatus
from bridges.stripe import StripeFailure, StripeGateway
from infrastructure.database import unit_of_work

# A client pays while the work can still happen or be accepted.
PAYABLE_PROJECT_STATUSES = frozenset({"awarded", "in_progress", "delivered"})


def intent_idempotency_key(booking_id: uuid.UUID) -> str:
    """Stripe answers a retry with this key with the intent the first attempt made."""
    return f"pi-{booking_id}"


async def create_intent(
    *,
    pool: asyncpg.Pool,
    stripe: StripeGateway,
    user: AuthenticatedUser,
    booking_id: uuid.UUID,
) -> tuple[IntentOut, bool]:
    """The booking's PaymentIntent, made on the first call; (intent, created now).

    The project and hold stay locked while Stripe answers, so concurrent calls for one booking
    queue and all get the one intent (our stored payment, and Stripe's idempotency key for a
    retry after a crash between Stripe's answer and our commit).
    """
    async with unit_of_work(pool) as conn:
        booking = await repository.fetch_booking(conn, booking_id=booking_id)
        if booking is None:
            raise NotFound("booking not found")
        if booking["client_id"] != user.id:
            raise Forbidden("only the booking's client pays for it")
        if booking["escrow_id"] is None:
            raise Conflict("the booking has no escrow hold", code="NO_ESCROW")
        project = await escrow_repository.lock_project(conn, project_id=booking["project_id"])
        escrow = await escrow_repository.lock_escrow(conn, escrow_id=booking["escrow_id"])
        assert project is not None and escrow is not None
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
        _check_payable_amount(escrow["amount_cents"], escrow["currency"])
        split = platform_fee(escrow["amount_cents"])
        if (split.fee_cents, split.net_cents) != (escrow["fee_cents"], escrow["net_cents"]):
            raise RuntimeError(f"escrow {escrow['id']} was not split by platform_fee")

        payment = await repository.fetch_payment_of_booking(conn, booking_id=booking_id)
        try:
            if payment is not None:
                intent = await stripe.retrieve_payment_intent(payment["stripe_payment_intent_id"])
            else:
                intent = await stripe.create_payment_intent(
                    amount_cents=split.amount_cents,
                    currency=escrow["currency"],
                    metadata={
                        "booking_id": str(booking_id),
                        "escrow_id": str(escrow["id"]),
                        "project_id": str(project["id"]),
                    },
                    idempotency_key=intent_idempotency_key(booking_id),
                )
        except StripeFailure as exc:
            raise provider_error(exc) from exc
        created = payment is None
        if payment is None:
            payment_id = uuid.uuid4()
            await repository.insert_payment(
                conn,
                payment_id=payment_id,
                booking_id=booking_id,
                escrow_id=escrow["id"],
                project_id=project["id"],
                client_id=user.id,
                intent_id=intent.id,
                amount_cents=split.amount_cents,
                fee_cents=split.fee_cents,
                net_cents=split.net_cents,
                currency=escrow["currency"],
            )
            status: PaymentStatus = "pending"
        else:
            payment_id = payment["id"]
            status = payment["status"]
    out = IntentOut(
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
    return out, created


def _check_payable_amount(amount_cents: int, currency: str) -> None:
    if currency not in SUPPORTED_CURRENCIES:
        raise Conflict(
            f"payments in {currency} are not supported",
            code="CURRENCY_NOT_SUPPORTED",
            details={"supported": sorted(SUPPORTED_CURRENCIES)},
        )
    if not MIN_AMOUNT_CENTS <= amount_cents <= MAX_AMOUNT_CENTS:
        raise Conflict(
            f"a card payment must be between {MIN_AMOUNT_CENTS} and {MAX_AMOUNT_CENTS} cents",
            code="AMOUNT_NOT_PAYABLE",
            details={"amountCents": amount_cents},
        )
