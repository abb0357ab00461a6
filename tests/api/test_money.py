"""The platform fee: 10%, rounded half up to the cent, and fee + net always equals the amount."""

from __future__ import annotations

import pytest

from api.money import platform_fee


@pytest.mark.parametrize(
    ("amount", "fee", "net"),
    [
        (1000, 100, 900),
        (1005, 101, 904),  # 100.5 rounds up
        (1004, 100, 904),  # 100.4 rounds down
        (1, 0, 1),
        (5, 1, 4),  # 0.5 rounds up
        (4, 0, 4),
        (0, 0, 0),
        (999_999_99, 10_000_000, 89_999_999),
        (1_000_000_000, 100_000_000, 900_000_000),
    ],
)
def test_fee_is_ten_percent_rounded_half_up(amount: int, fee: int, net: int) -> None:
    split = platform_fee(amount)
    assert (split.fee_cents, split.net_cents) == (fee, net)


def test_fee_and_net_always_sum_to_the_amount() -> None:
    for amount in range(0, 20_000, 7):
        split = platform_fee(amount)
        assert split.fee_cents + split.net_cents == amount
        assert 0 <= split.fee_cents <= amount


def test_a_negative_amount_is_refused() -> None:
    with pytest.raises(ValueError):
        platform_fee(-1)
