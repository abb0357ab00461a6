"""Money: integer minor units (cents) plus an ISO 4217 currency, and the one platform-fee rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# Currencies we take payments in. All have two decimal places, so "cents" is exact for each;
# adding a zero-decimal currency (JPY) needs a minor-unit table first.
SUPPORTED_CURRENCIES: Final = frozenset({"USD", "EUR", "GBP", "CAD", "AUD"})

PLATFORM_FEE_PERCENT: Final = 10
# Upper bound of any single amount we accept: $10M. Stripe's own card limit is $999,999.99, so
# anything above is a typo or an attack, never a real gig.
MAX_AMOUNT_CENTS: Final = 1_000_000_000
# Stripe refuses charges under 50 cents in USD.
MIN_AMOUNT_CENTS: Final = 50


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
