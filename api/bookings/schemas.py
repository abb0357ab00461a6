"""Bodies of /api/bookings."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from api.projects.schemas import AmountCents
from api.schemas import (
    DecimalAmount,
    FieldProblem,
    PairedApiModel,
    ResponseModel,
    resolve_amount,
)

EscrowStatus = Literal["unfunded", "funded", "frozen", "refunding", "released", "refunded", "split"]


class BookingCreate(PairedApiModel):
    """The agreed price restates the accepted bid's: the worker agreed to that price and no
    other. It comes as `agreedAmountCents` (canonical) or as the seed's `agreedAmount`, a
    decimal in the bid's currency's major unit (1200.00 USD, not 120000); one of the two, or
    both if they agree."""

    either_or = (("agreedAmountCents", "agreedAmount"),)

    project_id: uuid.UUID
    worker_id: uuid.UUID
    agreed_amount_cents: AmountCents | None = Field(
        default=None, description="Integer minor units (cents); the canonical form."
    )
    agreed_amount: DecimalAmount | None = None

    @model_validator(mode="after")
    def _an_amount(self) -> BookingCreate:
        if self.agreed_amount_cents is None and self.agreed_amount is None:
            problem = FieldProblem(
                "agreedAmountCents",
                "required: agreedAmountCents (integer minor units) or agreedAmount "
                "(a decimal amount)",
                "missing",
            )
            raise problem.as_validation_error(type(self).__name__, None)
        return self

    @property
    def amount_field(self) -> str:
        """The field the client stated the price in, to name in an error."""
        return "agreedAmount" if self.agreed_amount is not None else "agreedAmountCents"

    def agreed_in(self, currency: str) -> int:
        """The stated price in minor units of the bid's currency (FieldProblem if it cannot
        be one, or the two forms disagree)."""
        return resolve_amount(
            cents=self.agreed_amount_cents,
            decimal=self.agreed_amount,
            currency=currency,
            cents_field="agreedAmountCents",
            decimal_field="agreedAmount",
        )


class EscrowHoldOut(ResponseModel):
    id: uuid.UUID
    status: EscrowStatus
    amount_cents: int
    fee_cents: int
    net_cents: int
    currency: str
    funded_at: datetime | None
    released_at: datetime | None
    refunded_at: datetime | None
    updated_at: datetime


class BookingOut(ResponseModel):
    id: uuid.UUID
    project_id: uuid.UUID
    bid_id: uuid.UUID
    client_id: uuid.UUID
    worker_id: uuid.UUID
    agreed_amount_cents: int
    currency: str
    escrow: EscrowHoldOut
    created_at: datetime


class PartyOut(ResponseModel):
    id: uuid.UUID
    name: str


class BookingItem(ResponseModel):
    """A booking as its parties list it: the project, both sides, the price and where the money
    is (the escrow hold's status is the booking's status)."""

    id: uuid.UUID
    project_id: uuid.UUID
    project_title: str
    client: PartyOut
    worker: PartyOut
    # The caller's side of the booking (null for an admin, who is on neither).
    role: Literal["client", "worker"] | None
    # The party on the other side from the caller (null for an admin).
    other_party: PartyOut | None
    agreed_amount_cents: int
    currency: str
    escrow_id: uuid.UUID
    escrow_status: EscrowStatus
    created_at: datetime


class BookingPage(ResponseModel):
    items: list[BookingItem]
    # Pass as `cursor` for the next page; null on the last one.
    next_cursor: str | None
