"""The seed's decimal amounts turned into integer minor units: exactly, or a refusal."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from api.auth.schemas import join_name, split_name
from api.money import AmountError, format_major, parse_decimal, to_minor_units
from api.projects.schemas import ProjectCreate
from api.schemas import FieldProblem, resolve_amount


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("12.34", "USD", 1234),
        ("0.1", "USD", 10),
        ("0.30", "USD", 30),
        # Trailing zeros are not decimals the currency lacks.
        ("12.340000", "USD", 1234),
        ("1200", "USD", 120_000),
        ("0.50", "EUR", 50),
        ("1500", "JPY", 1500),
        ("1500.000", "JPY", 1500),
        ("1.234", "KWD", 1234),
        ("10000000.00", "USD", 1_000_000_000),
        # Far past anything payable, still exact: no float would keep the last cent.
        ("99999999999999.99", "USD", 9_999_999_999_999_999),
        ("1.5E+3", "USD", 150_000),
        ("0E-9999", "USD", 0),
    ],
)
def test_a_decimal_becomes_exactly_its_minor_units(text: str, currency: str, minor: int) -> None:
    assert to_minor_units(Decimal(text), currency) == minor


@pytest.mark.parametrize(
    ("text", "currency", "why"),
    [
        # What 0.1 + 0.2 gives in a client that adds floats: refused, not rounded to 0.30.
        ("0.30000000000000004", "USD", "more decimals"),
        ("12.345", "USD", "more decimals"),
        ("0.001", "EUR", "more decimals"),
        ("1.5", "JPY", "more decimals"),
        ("1.2345", "KWD", "more decimals"),
        ("1E-1000000000", "USD", "more decimals"),
        ("-1.00", "USD", "negative"),
        ("1E+100000000", "USD", "too large"),
        ("1" * 40, "USD", "too large"),
        ("NaN", "USD", "finite"),
        ("Infinity", "USD", "finite"),
        ("12.34", "XYZ", "no minor unit"),
    ],
)
def test_an_inexact_or_absurd_decimal_is_refused(text: str, currency: str, why: str) -> None:
    with pytest.raises(AmountError, match=why):
        to_minor_units(Decimal(text), currency)


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("1200.50", Decimal("1200.50")),
        ("7", Decimal(7)),
        (7, Decimal(7)),
        (Decimal("0.1"), Decimal("0.1")),
    ],
)
def test_strings_integers_and_decimals_are_read_as_written(value: Any, parsed: Decimal) -> None:
    result = parse_decimal(value)
    assert result == parsed
    assert str(result) == str(parsed)


@pytest.mark.parametrize(
    "value",
    [
        # A float was already rounded to binary: 0.1 is 0.1000000000000000055511151231257827.
        0.1,
        12.34,
        float("nan"),
        Decimal("NaN"),
        Decimal("-Infinity"),
        True,
        None,
        [],
        "",
        "12,34",
        "$12.34",
        " 12.34",
        "1e3",
        ".5",
        "5.",
        "١٢",  # Arabic-Indic digits: int() would take them, money must not
        "1" * 40,
    ],
)
def test_anything_but_an_exact_decimal_is_refused(value: Any) -> None:
    with pytest.raises(AmountError):
        parse_decimal(value)


def test_minor_units_print_as_the_decimal_a_seed_client_sends() -> None:
    assert format_major(120_050, "USD") == "1200.50"
    assert format_major(5, "USD") == "0.05"
    assert format_major(1500, "JPY") == "1500"
    assert format_major(1234, "KWD") == "1.234"


def test_either_form_or_both_agreeing_give_the_amount() -> None:
    kwargs: dict[str, Any] = {"currency": "USD", "cents_field": "xCents", "decimal_field": "x"}
    assert resolve_amount(cents=1234, decimal=None, **kwargs) == 1234
    assert resolve_amount(cents=None, decimal=Decimal("12.34"), **kwargs) == 1234
    assert resolve_amount(cents=1234, decimal=Decimal("12.340"), **kwargs) == 1234


@pytest.mark.parametrize(
    ("cents", "decimal", "field", "kind"),
    [
        (None, None, "xCents", "missing"),
        (1234, Decimal("12.35"), "x", "amount_mismatch"),
        # 1234 dollars sent where 1234 cents were meant: the 100x mistake is a refusal.
        (1234, Decimal("1234"), "x", "amount_mismatch"),
        (None, Decimal("0.49"), "x", "amount_range"),
        (None, Decimal("10000000.01"), "x", "amount_range"),
        (None, Decimal("12.345"), "x", "decimal_amount"),
    ],
)
def test_a_missing_disagreeing_or_unpayable_amount_names_its_field(
    cents: int | None, decimal: Decimal | None, field: str, kind: str
) -> None:
    with pytest.raises(FieldProblem) as caught:
        resolve_amount(
            cents=cents, decimal=decimal, currency="USD", cents_field="xCents", decimal_field="x"
        )
    assert (caught.value.field, caught.value.type) == (field, kind)


def test_a_schema_reports_the_decimal_field_not_the_whole_body() -> None:
    with pytest.raises(ValidationError) as caught:
        ProjectCreate.model_validate({"title": "A gig", "budget": Decimal("12.345")})
    [error] = caught.value.errors()
    assert error["loc"] == ("budget",)
    assert error["type"] == "decimal_amount"


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("Ann Lee Smith", ("Ann", "Lee Smith")),
        ("  Ann\t Lee ", ("Ann", "Lee")),
        ("Cher", ("Cher", "")),
    ],
)
def test_a_display_name_splits_at_its_first_space(name: str, parts: tuple[str, str]) -> None:
    assert split_name(name) == parts
    assert join_name(*parts) == " ".join(name.split())
