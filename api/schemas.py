"""The base of every API body: camelCase on the wire (seed contract), unknown fields refused,
and no NUL characters anywhere in it. Also how money arrives in either of its two forms:
integer minor units (`…Cents`, canonical) or the seed's decimal in the major unit."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, ClassVar, get_args

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_core.core_schema import ErrorType

from api.errors import Invalid
from api.money import (
    AmountError,
    charge_limit_problem,
    parse_decimal,
    to_minor_units,
)

# The error type `api.handlers` recognises to report the offending field's path.
NUL_ERROR = "nul_character"


def _nul_path(value: Any, path: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """The path to the first string holding U+0000, or None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _nul_path(item, (*path, str(key)))
            if found is not None or (isinstance(key, str) and "\x00" in key):
                return found or (*path, str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _nul_path(item, (*path, str(index)))
            if found is not None:
                return found
    return None


class ResponseModel(BaseModel):
    """The base of a body the API only writes: camelCase on the wire like ApiModel, without its
    input validators. Those walk every string for NUL and wrap validation on each construction,
    which on a page of fifty nested items costs more than the query that filled it."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _refuse_nul(cls, data: Any) -> Any:
        # PostgreSQL text cannot hold U+0000: let through, it would fail as a 500 at insert time.
        # A model validator (not a "*" field validator) keeps discriminated unions working.
        # repr() shows a NUL in any string, however deep, as \x00: one pass in C settles the
        # common case, where the walk in Python (which names the field) is not needed.
        if "\\x00" not in repr(data):
            return data
        path = _nul_path(data)
        if path is not None:
            raise PydanticCustomError(
                NUL_ERROR, "must not contain NUL (U+0000) characters", {"field": ".".join(path)}
            )
        return data


class PairedApiModel(ApiModel):
    """A body with fields sent under either of two names, (canonical, seed's) as on the wire:
    one of each pair is required. The model's own validator says so when every field is valid;
    when some other field is not, `_name_missing_pairs` adds it, so a 422 names every field at
    fault. A class of its own because a wrap validator costs each model it is on, and most have
    no pairs."""

    either_or: ClassVar[tuple[tuple[str, str], ...]] = ()

    @model_validator(mode="wrap")
    @classmethod
    def _name_missing_pairs(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        try:
            return handler(data)
        except ValidationError as exc:
            if not cls.either_or or not isinstance(data, dict):
                raise
            named = {error["loc"][:1] for error in exc.errors()}
            missing = [
                FieldProblem(canonical, f"required: {canonical} or {seed}", "missing")
                for canonical, seed in cls.either_or
                if data.get(canonical) is None
                and data.get(seed) is None
                and (canonical,) not in named
            ]
            if not missing:
                raise
            raise _with_problems(exc, missing) from None


# --- exact JSON numbers


class ExactJsonRequest(Request):
    """Reads a JSON body's fractional numbers as Decimal, from their text. Starlette's json()
    makes them floats, and 0.1 as a float is already not 0.1: a decimal amount must reach the
    schema as the client wrote it. NaN and Infinity become Decimal too, and are refused there."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = json.loads(await self.body(), parse_float=Decimal, parse_constant=Decimal)
        return self._json


class ExactJsonRoute(APIRoute):
    """The route class of every router whose bodies carry decimal amounts."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def exact(request: Request) -> Response:
            return await handler(ExactJsonRequest(request.scope, request.receive))

        return exact


def invalid(details: list[dict[str, str]]) -> Invalid:
    """A 422 naming each field at fault, worded as FastAPI's validation errors are."""
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details)
    return Invalid(f"invalid request: {summary}", details=details)


# --- money in either form


def _decimal_amount(value: Any) -> Decimal:
    try:
        return parse_decimal(value)
    except AmountError as exc:
        raise PydanticCustomError("decimal_amount", str(exc)) from None


# The seed's form of an amount: a decimal in the currency's major unit (1200.50 USD), as a JSON
# number or a string; converted to minor units once the currency is known (`resolve_amount`).
DecimalAmount = Annotated[
    Decimal,
    PlainValidator(_decimal_amount),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"},
            ],
            "description": (
                "A decimal amount in the currency's major unit (1200.50 = $1,200.50), as the "
                "seed's API took it; converted exactly to minor units, and refused (422) if it "
                "has more decimals than the currency has."
            ),
            "examples": [1200.5, "1200.50"],
        }
    ),
]


_BUILT_IN_ERRORS: frozenset[str] = frozenset(get_args(ErrorType))


def _with_problems(exc: ValidationError, problems: list[FieldProblem]) -> ValidationError:
    """`exc` with more errors: pydantic rebuilds built-in errors from their type, ours (custom
    types) from their message."""
    details: list[InitErrorDetails] = []
    for error in exc.errors():
        kind: str | PydanticCustomError = error["type"]
        if kind not in _BUILT_IN_ERRORS:
            template = error["msg"].replace("{", "(").replace("}", ")")
            kind = PydanticCustomError(error["type"], template, error.get("ctx"))
        detail = InitErrorDetails(type=kind, loc=error["loc"], input=error["input"])
        if "ctx" in error and isinstance(kind, str):
            detail["ctx"] = error["ctx"]
        details.append(detail)
    for problem in problems:
        kind = PydanticCustomError(problem.type, problem.message)
        details.append(InitErrorDetails(type=kind, loc=(problem.field,), input=None))
    return ValidationError.from_exception_data(exc.title, details)


def filled_in(description: str | None = None) -> Any:
    """The default of a field sent under either of two names (the canonical one and the seed's):
    optional in the request and the OpenAPI, always set by the model's validator, so typed as
    the value it then holds."""
    return Field(default=None, description=description)


@dataclass(frozen=True)
class FieldProblem(Exception):
    """A request field refused after its own validation (an amount checked against its
    currency, two spellings of one field that disagree), reported in the envelope like any
    validation error: from a model validator, or as `Invalid` from a service."""

    field: str
    message: str
    type: str

    @property
    def detail(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "type": self.type}

    def as_invalid(self) -> Invalid:
        return invalid([self.detail])

    def as_validation_error(self, model: str, value: Any) -> ValidationError:
        # Raised inside a model validator, pydantic keeps the location: the envelope then names
        # the field (`body.budget`), not the whole body.
        error = PydanticCustomError(self.type, self.message.replace("{", "(").replace("}", ")"))
        return ValidationError.from_exception_data(
            model, [InitErrorDetails(type=error, loc=(self.field,), input=value)]
        )


def resolve_amount(
    *,
    cents: int | None,
    decimal: Decimal | None,
    currency: str,
    cents_field: str,
    decimal_field: str,
) -> int:
    """The amount in minor units from whichever form was sent.

    `cents` is already bounded by its type (AmountCents); the decimal is converted exactly in
    `currency` and bounded the same way. Both sent is accepted only when they agree; neither is
    refused, naming the canonical field.
    """
    if decimal is None:
        if cents is None:
            raise FieldProblem(
                cents_field,
                f"required: {cents_field} (integer minor units) or {decimal_field} "
                f"(a decimal amount in {currency})",
                "missing",
            )
        return cents
    try:
        converted = to_minor_units(decimal, currency)
    except AmountError as exc:
        raise FieldProblem(decimal_field, str(exc), "decimal_amount") from None
    # The currency's own charge limits (api/money.py CHARGE_LIMITS), not the widest bounds.
    problem = charge_limit_problem(converted, currency)
    if problem is not None:
        raise FieldProblem(decimal_field, problem, "amount_range")
    if cents is not None and cents != converted:
        raise FieldProblem(
            decimal_field,
            f"{decimal} {currency} is {converted} minor units, but {cents_field} is {cents}; "
            f"send one of the two",
            "amount_mismatch",
        )
    return converted
