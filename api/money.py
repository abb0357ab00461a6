"""Money: integer minor units (cents) plus an ISO 4217 currency, and the one platform-fee rule.

The seed's API spoke decimal amounts in a currency's major unit (its columns were `decimal`);
`to_minor_units` turns one into integer minor units exactly, or says why it cannot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

# Currencies we take payments in. All have two decimal places, so "cents" is exact for each;
# adding a zero-decimal currency (JPY) needs its entry in MINOR_UNIT_DIGITS, which it has.
SUPPORTED_CURRENCIES: Final = frozenset({"USD", "EUR", "GBP", "CAD", "AUD"})

# ISO 4217 exponents: how many decimals the major unit has. Wider than SUPPORTED_CURRENCIES
# so a conversion is right the day a zero- or three-decimal currency becomes payable.
MINOR_UNIT_DIGITS: Final[dict[str, int]] = {
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "CAD": 2,
    "AUD": 2,
    "JPY": 0,
    "KRW": 0,
    "BHD": 3,
    "KWD": 3,
}

PLATFORM_FEE_PERCENT: Final = 10


@dataclass(frozen=True)
class ChargeLimits:
    min_cents: int
    max_cents: int


# What Stripe accepts for one charge, in minor units, per currency we take payments in: the
# minimum charge amounts (https://docs.stripe.com/currencies#minimum-and-maximum-charge-amounts:
# USD/CAD/AUD $0.50, EUR €0.50, GBP £0.30) and the maximum amount of a charge, eight digits
# (99,999,999 minor units: $999,999.99). A budget or bid outside them could never be paid, so it
# is refused when it is made (`charge_limit_problem`), not at payment time.
CHARGE_LIMITS: Final[dict[str, ChargeLimits]] = {
    "USD": ChargeLimits(min_cents=50, max_cents=99_999_999),
    "CAD": ChargeLimits(min_cents=50, max_cents=99_999_999),
    "AUD": ChargeLimits(min_cents=50, max_cents=99_999_999),
    "EUR": ChargeLimits(min_cents=50, max_cents=99_999_999),
    "GBP": ChargeLimits(min_cents=30, max_cents=99_999_999),
}
# The bounds over every currency: what an amount of any currency must at least be within (a
# field's schema, the disputes' split parts); the currency's own limits are checked with it.
MIN_AMOUNT_CENTS: Final = min(limits.min_cents for limits in CHARGE_LIMITS.values())
MAX_AMOUNT_CENTS: Final = max(limits.max_cents for limits in CHARGE_LIMITS.values())

# Plain decimal notation for amounts sent as strings (node-postgres hands `decimal` columns to
# a seed client as strings like "1200.00"): digits, an optional fraction, no exponent.
_PLAIN_DECIMAL: Final = re.compile(r"-?[0-9]+(\.[0-9]+)?")
# Far more digits than any payable amount has; refusing longer input up front keeps the
# arithmetic below small whatever a body holds.
_MAX_DIGITS: Final = 30
_MAX_INTEGER_DIGITS: Final = 15


class AmountError(ValueError):
    """Why a decimal amount is not an exact amount of a currency (the message names no field)."""


@dataclass(frozen=True)
class FeeSplit:
    amount_cents: int
    fee_cents: int
    net_cents: int


def platform_fee(amount_cents: int) -> FeeSplit:
    """Split an amount into the platform fee and the worker's net.

    The fee is 10% rounded half up to the cent (1005 → 101, 1004 → 100), computed in integers
    so no float ever touches money; the worker gets the rest, so fee + net == amount always.
    """
    if amount_cents < 0:
        raise ValueError("amount must not be negative")
    fee = (amount_cents * PLATFORM_FEE_PERCENT + 50) // 100
    return FeeSplit(amount_cents=amount_cents, fee_cents=fee, net_cents=amount_cents - fee)


def minor_unit_digits(currency: str) -> int:
    try:
        return MINOR_UNIT_DIGITS[currency]
    except KeyError:
        raise AmountError(f"no minor unit known for currency {currency}") from None


def parse_decimal(value: object) -> Decimal:
    """A decimal amount as a client sent it: a JSON number, read from the body's text as a
    Decimal (api/schemas.py `ExactJsonRoute`), an integer, or a string in plain notation.

    A float is refused: it is either NaN/Infinity or a number that was already rounded to
    binary on its way in, and guessing which decimal it stood for is how cents go missing.
    """
    if isinstance(value, bool):
        raise AmountError("must be a decimal amount, not a boolean")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise AmountError("must be a finite number")
        return value
    if isinstance(value, str):
        if len(value) > _MAX_DIGITS + 2 or not _PLAIN_DECIMAL.fullmatch(value):
            raise AmountError('must be a decimal amount such as 1200.50 or "1200.50"')
        return Decimal(value)
    if isinstance(value, float):
        raise AmountError("must be an exact decimal amount (a JSON number or a string)")
    raise AmountError('must be a decimal amount such as 1200.50 or "1200.50"')


def to_minor_units(amount: Decimal, currency: str) -> int:
    """`amount` of `currency`'s major unit in integer minor units, exactly: 12.34 USD → 1234,
    1500 JPY → 1500. More decimals than the currency has (12.345 USD) is an error, never
    rounded; trailing zeros are not decimals (12.340 USD → 1234)."""
    digits = minor_unit_digits(currency)
    if not amount.is_finite():
        raise AmountError("must be a finite number")
    if amount < 0:
        raise AmountError("must not be negative")
    _, coefficient_digits, exponent = amount.as_tuple()
    assert isinstance(exponent, int)  # finite, checked above
    if len(coefficient_digits) > _MAX_DIGITS or amount.adjusted() >= _MAX_INTEGER_DIGITS:
        raise AmountError("is too large")
    coefficient = int("".join(map(str, coefficient_digits)))
    if coefficient == 0:
        return 0
    # Integers only from here: 12.340 is 12340 * 10^-3, which is 1234 * 10^-2.
    while exponent < 0 and coefficient % 10 == 0:
        coefficient //= 10
        exponent += 1
    if -exponent > digits:
        places = "no decimals" if digits == 0 else f"at most {digits} decimals"
        raise AmountError(f"has more decimals than {currency} allows ({places})")
    return int(coefficient * 10 ** (exponent + digits))


def format_major(minor_units: int, currency: str) -> str:
    """Minor units as the decimal a seed client would have sent: 120000 USD → "1200.00"."""
    digits = minor_unit_digits(currency)
    sign = "-" if minor_units < 0 else ""
    whole, fraction = divmod(abs(minor_units), 10**digits)
    return f"{sign}{whole}.{fraction:0{digits}d}" if digits else f"{sign}{whole}"


def charge_limit_problem(amount_cents: int, currency: str) -> str | None:
    """Why Stripe would refuse to charge this amount in this currency, or None."""
    limits = CHARGE_LIMITS.get(currency)
    if limits is None:
        return f"payments in {currency} are not supported"
    if not limits.min_cents <= amount_cents <= limits.max_cents:
        return (
            f"must be between {format_major(limits.min_cents, currency)} and "
            f"{format_major(limits.max_cents, currency)} {currency} "
            f"({limits.min_cents} to {limits.max_cents} minor units), what Stripe can charge"
        )
    return None
