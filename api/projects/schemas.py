"""Bodies of /api/projects, and the input types the other gig domains share (money, text)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from api.money import (
    MAX_AMOUNT_CENTS,
    MIN_AMOUNT_CENTS,
    SUPPORTED_CURRENCIES,
    charge_limit_problem,
)
from api.schemas import (
    ApiModel,
    DecimalAmount,
    FieldProblem,
    PairedApiModel,
    ResponseModel,
    filled_in,
    resolve_amount,
)
from api.users.schemas import dedupe_skills

MAX_REQUIRED_SKILLS: Final = 30
# The same bound as a worker's skills (api/users/schemas.py).
MAX_SKILL_CHARS: Final = 50
# Two years ahead: a longer horizon is a typo (2205 for 2025), not a gig.
MAX_DEADLINE_AHEAD: Final = timedelta(days=730)

ProjectStatus = Literal[
    "open", "awarded", "in_progress", "delivered", "completed", "cancelled", "disputed"
]


def _supported_currency(value: str) -> str:
    if value not in SUPPORTED_CURRENCIES:
        raise ValueError(f"unsupported currency; one of {', '.join(sorted(SUPPORTED_CURRENCIES))}")
    return value


def _ahead(value: datetime) -> datetime:
    now = datetime.now(UTC)
    if value <= now:
        raise ValueError("must be in the future")
    if value > now + MAX_DEADLINE_AHEAD:
        raise ValueError(f"must be within {MAX_DEADLINE_AHEAD.days} days from now")
    return value


def bounded(max_length: int, *, min_length: int = 0) -> StringConstraints:
    """Trimmed text of a bounded length (ApiModel already refuses NUL characters)."""
    return StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length)


# Money is integer cents (strict: 12.5 or "1200" are refused, never read as dollars or
# coerced) within what Stripe charges in some currency; `check_chargeable` then holds it to its
# own currency's limits (api/money.py CHARGE_LIMITS), so every amount can really be paid.
AmountCents = Annotated[int, Field(strict=True, ge=MIN_AMOUNT_CENTS, le=MAX_AMOUNT_CENTS)]
# ISO 4217, accepted in any case and stored upper; only the currencies we take payments in.
Currency = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z]{3}$"),
    AfterValidator(str.upper),
    AfterValidator(_supported_currency),
]
# Normalised like a worker's skills (api/users/schemas.py): trimmed, duplicates in any case
# dropped, first spelling kept; matching ignores case (projects.skill_keys).
Skill = Annotated[str, bounded(MAX_SKILL_CHARS, min_length=1)]
RequiredSkills = Annotated[
    list[Skill], Field(max_length=MAX_REQUIRED_SKILLS), AfterValidator(dedupe_skills)
]
Deadline = Annotated[AwareDatetime, AfterValidator(_ahead)]


def check_chargeable(amount_cents: int, currency: str, *, field: str) -> None:
    """FieldProblem naming `field` if Stripe would not charge this amount in this currency."""
    problem = charge_limit_problem(amount_cents, currency)
    if problem is not None:
        raise FieldProblem(field, problem, "amount_range")


Title = Annotated[str, bounded(200, min_length=3)]
Description = Annotated[str, bounded(20_000)]


class ProjectCreate(PairedApiModel):
    """The budget comes as `budgetCents` (canonical) or as the seed's `budget`, a decimal in the
    currency's major unit; one of the two, or both if they agree. `skills` is the seed's name
    of `requiredSkills`. The seed's projects had no currency: it defaults to USD."""

    either_or = (("budgetCents", "budget"),)

    title: Title
    description: Description = ""
    # Never None once validated (`_one_budget` fills it from `budget`); typed as the stored int.
    budget_cents: AmountCents = filled_in("Integer minor units (cents); the canonical form.")
    budget: DecimalAmount | None = Field(default=None, exclude=True)
    currency: Currency = "USD"
    required_skills: RequiredSkills = Field(default_factory=list)
    skills: RequiredSkills | None = Field(
        default=None, exclude=True, description="The seed's name of requiredSkills."
    )
    deadline: Deadline | None = None

    @model_validator(mode="after")
    def _one_budget(self) -> ProjectCreate:
        try:
            self.budget_cents = resolve_amount(
                cents=self.budget_cents,
                decimal=self.budget,
                currency=self.currency,
                cents_field="budgetCents",
                decimal_field="budget",
            )
            check_chargeable(
                self.budget_cents,
                self.currency,
                field="budget" if self.budget is not None else "budgetCents",
            )
        except FieldProblem as problem:
            raise problem.as_validation_error(type(self).__name__, self.budget) from None
        if self.skills is not None:
            if "required_skills" in self.model_fields_set and self.skills != self.required_skills:
                conflict = FieldProblem(
                    "skills", "differs from requiredSkills; send one of the two", "conflict"
                )
                raise conflict.as_validation_error(type(self).__name__, self.skills)
            self.required_skills = self.skills
        return self


# The request attributes PATCH may change, named as the columns they are stored in.
EDITABLE_FIELDS: Final = (
    "title",
    "description",
    "budget_cents",
    "currency",
    "required_skills",
    "deadline",
)


class ProjectUpdate(ApiModel):
    """Merge semantics: fields left out keep their value; `deadline: null` removes it. The seed's
    `budget` (a decimal in the currency's major unit) and `skills` are taken as on creation; a
    `budget` sent without `currency` is in the project's own currency (converted by the
    service, which knows it)."""

    title: Title | None = None
    description: Description | None = None
    budget_cents: AmountCents | None = None
    budget: DecimalAmount | None = Field(default=None, exclude=True)
    currency: Currency | None = None
    required_skills: RequiredSkills | None = None
    skills: RequiredSkills | None = Field(
        default=None, exclude=True, description="The seed's name of requiredSkills."
    )
    deadline: Deadline | None = None

    @model_validator(mode="after")
    def _seed_names(self) -> ProjectUpdate:
        if self.skills is not None:
            if self.required_skills is not None and self.skills != self.required_skills:
                conflict = FieldProblem(
                    "skills", "differs from requiredSkills; send one of the two", "conflict"
                )
                raise conflict.as_validation_error(type(self).__name__, self.skills)
            self.required_skills = self.skills
        return self

    def budget_in(self, currency: str) -> int | None:
        """The new budget in minor units of `currency` (the body's, else the project's), from
        whichever form was sent; None when neither was. FieldProblem when it is no amount."""
        if self.budget is None:
            return self.budget_cents
        return resolve_amount(
            cents=self.budget_cents,
            decimal=self.budget,
            currency=self.currency or currency,
            cents_field="budgetCents",
            decimal_field="budget",
        )

    @field_validator(
        "title", "description", "budget_cents", "currency", "required_skills", mode="before"
    )
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Runs only for values sent: null on a field that cannot be empty.
        if value is None:
            raise ValueError("may not be null")
        return value

    @model_validator(mode="after")
    def _chargeable(self) -> ProjectUpdate:
        # With only one of the two sent, the service checks against the stored other.
        if self.budget_cents is not None and self.currency is not None:
            try:
                check_chargeable(self.budget_cents, self.currency, field="budgetCents")
            except FieldProblem as problem:
                raise problem.as_validation_error(type(self).__name__, self.budget_cents) from None
        return self


class StatusChange(ApiModel):
    status: ProjectStatus


class ProjectOut(ResponseModel):
    id: uuid.UUID
    client_id: uuid.UUID
    title: str
    description: str
    budget_cents: int
    currency: str
    required_skills: list[str]
    deadline: datetime | None
    status: ProjectStatus
    worker_id: uuid.UUID | None
    accepted_bid_id: uuid.UUID | None
    # Set once the client booked the worker: the handle for funding and the escrow.
    booking_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class ProjectPage(ResponseModel):
    items: list[ProjectOut]
    # Pass back as `cursor` for the next page; null on the last one.
    next_cursor: str | None
