"""Bodies of /api/projects/{id}/bids."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import Field, model_validator

from api.projects.schemas import AmountCents, Currency, bounded, check_chargeable
from api.schemas import (
    DecimalAmount,
    FieldProblem,
    PairedApiModel,
    ResponseModel,
    filled_in,
    resolve_amount,
)

# A year: longer is not a gig but a job, and a typo (3650) is caught.
MAX_DELIVERY_DAYS: Final = 365

BidStatus = Literal["pending", "accepted", "rejected", "withdrawn", "expired"]


DeliveryDays = Annotated[int, Field(strict=True, ge=1, le=MAX_DELIVERY_DAYS)]


class BidCreate(PairedApiModel):
    """The price comes as `amountCents` (canonical) or as the seed's `amount`, a decimal in the
    project's currency's major unit, converted once the project is known (`amount_in`); the
    delivery as `deliveryDays` or the seed's `deliveryTime`, in days. One of each pair, or both
    if they agree."""

    either_or = (("amountCents", "amount"), ("deliveryDays", "deliveryTime"))

    amount_cents: AmountCents | None = Field(
        default=None, description="Integer minor units (cents); the canonical form."
    )
    amount: DecimalAmount | None = None
    # Optional: a bid is always in its project's currency; sending another one is a 422.
    currency: Currency | None = None
    # Never None once validated (`_one_of_each` fills it from `deliveryTime`).
    delivery_days: DeliveryDays = filled_in()
    delivery_time: DeliveryDays | None = Field(
        default=None, exclude=True, description="The seed's name of deliveryDays, in days."
    )
    proposal: Annotated[str, bounded(5000, min_length=1)]

    @model_validator(mode="after")
    def _one_of_each(self) -> BidCreate:
        problem = None
        if self.amount_cents is None and self.amount is None:
            problem = FieldProblem(
                "amountCents",
                "required: amountCents (integer minor units) or amount (a decimal amount)",
                "missing",
            )
        elif self.delivery_time is None and self.delivery_days is None:
            problem = FieldProblem(
                "deliveryDays", "required: deliveryDays or deliveryTime (days)", "missing"
            )
        elif self.delivery_time is not None:
            if self.delivery_days is not None and self.delivery_days != self.delivery_time:
                problem = FieldProblem(
                    "deliveryTime", "differs from deliveryDays; send one of the two", "conflict"
                )
            self.delivery_days = self.delivery_time
        if problem is not None:
            raise problem.as_validation_error(type(self).__name__, None)
        return self

    def amount_in(self, currency: str) -> int:
        """The bid's amount in minor units of the project's currency; FieldProblem if the
        decimal does not fit it or disagrees with amountCents."""
        amount_cents = resolve_amount(
            cents=self.amount_cents,
            decimal=self.amount,
            currency=currency,
            cents_field="amountCents",
            decimal_field="amount",
        )
        field = "amount" if self.amount is not None else "amountCents"
        check_chargeable(amount_cents, currency, field=field)
        return amount_cents


class BidOut(ResponseModel):
    id: uuid.UUID
    project_id: uuid.UUID
    worker_id: uuid.UUID
    amount_cents: int
    currency: str
    delivery_days: int
    proposal: str
    status: BidStatus
    created_at: datetime
    updated_at: datetime


class BidPage(ResponseModel):
    items: list[BidOut]
    next_cursor: str | None


class BidAcceptance(ResponseModel):
    """The accepted bid and the project it awarded."""

    bid: BidOut
    # The other bids that were still pending, now rejected.
    rejected_bid_ids: list[uuid.UUID]
