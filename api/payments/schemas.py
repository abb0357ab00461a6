"""Bodies of /api/payments."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from api.money import format_major
from api.projects.schemas import AmountCents, Currency
from api.schemas import (
    ApiModel,
    DecimalAmount,
    FieldProblem,
    ResponseModel,
    invalid,
    resolve_amount,
)

PaymentStatus = Literal["pending", "succeeded", "failed"]


class CreateIntentRequest(ApiModel):
    """Only `bookingId` is needed: the charge is always the booking's agreed amount, in its
    currency, to its worker. A seed client also states `payeeId`, `amount` (a decimal in the
    currency's major unit) and `currency`; `amountCents` is the canonical form of the amount.
    Each one sent must match the booking, or the call is a 422 and no PaymentIntent is made:
    a stated figure never changes what is charged."""

    booking_id: uuid.UUID
    payee_id: uuid.UUID | None = Field(default=None, description="The booking's worker.")
    amount: DecimalAmount | None = None
    amount_cents: AmountCents | None = Field(
        default=None, description="Integer minor units (cents); the canonical form."
    )
    currency: Currency | None = None

    def check_against(self, booking: Mapping[str, Any]) -> None:
        """Refuse (422, naming each field) any stated term that is not the booking's."""
        details = []
        if self.payee_id is not None and self.payee_id != booking["worker_id"]:
            details.append({"field": "payeeId", "message": "must be the booking's worker"})
        currency: str = booking["currency"]
        agreed: int = booking["agreed_amount_cents"]
        if self.currency is not None and self.currency != currency:
            details.append(
                {"field": "currency", "message": f"must be the booking's currency, {currency}"}
            )
        elif self.amount is not None or self.amount_cents is not None:
            try:
                stated = resolve_amount(
                    cents=self.amount_cents,
                    decimal=self.amount,
                    currency=currency,
                    cents_field="amountCents",
                    decimal_field="amount",
                )
            except FieldProblem as problem:
                details.append(problem.detail)
            else:
                if stated != agreed:
                    field = "amount" if self.amount is not None else "amountCents"
                    shown = (
                        f"{format_major(agreed, currency)} {currency}"
                        if self.amount is not None
                        else f"{agreed} cents {currency}"
                    )
                    details.append(
                        {
                            "field": field,
                            "message": f"must be the booking's agreed amount, {shown}",
                            "type": "amount_mismatch",
                        }
                    )
        if details:
            raise invalid(details)


class IntentOut(ResponseModel):
    """What the client's browser needs to confirm the payment with Stripe.js.

    The client is charged amount_cents (the agreed amount); the platform fee is 10% of it,
    rounded half up to the cent; the worker receives net_cents = amount_cents - fee_cents.
    """

    payment_id: uuid.UUID
    booking_id: uuid.UUID
    escrow_id: uuid.UUID
    payment_intent_id: str
    client_secret: str
    amount_cents: int
    fee_cents: int
    net_cents: int
    currency: str
    status: PaymentStatus


class WebhookAck(ResponseModel):
    event_id: str
    # applied: it changed something; duplicate: seen before, nothing done; ignored: not a type
    # or object we act on; rejected: ours but inconsistent (see note), nothing done.
    outcome: Literal["applied", "duplicate", "ignored", "rejected"]
    note: str | None = None
