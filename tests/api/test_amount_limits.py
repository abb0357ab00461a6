"""Budgets and bids outside what Stripe charges in their currency are refused when made (422
naming the field), not discovered when the client tries to pay."""

from __future__ import annotations

import httpx
import pytest

from api.money import CHARGE_LIMITS
from tests.api.conftest import error_fields, register


def _project(**fields: object) -> dict[str, object]:
    return {"title": "Limits", "description": "Stripe's per-currency bounds.", **fields}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"budgetCents": 49, "currency": "USD"}, "budgetCents"),
        ({"budgetCents": 49, "currency": "EUR"}, "budgetCents"),
        ({"budgetCents": 29, "currency": "GBP"}, "budgetCents"),
        ({"budgetCents": 100_000_000, "currency": "CAD"}, "budgetCents"),
        ({"budget": "0.49", "currency": "AUD"}, "budget"),
        ({"budget": "0.29", "currency": "GBP"}, "budget"),
        ({"budget": "1000000.00", "currency": "USD"}, "budget"),
    ],
)
async def test_a_budget_stripe_cannot_charge_is_refused(
    client: httpx.AsyncClient, fields: dict[str, object], field: str
) -> None:
    owner = await register(client, role="client")
    response = await client.post("/api/projects", json=_project(**fields), headers=owner.headers)
    assert response.status_code == 422, response.text
    assert error_fields(response) == [field]


@pytest.mark.parametrize("currency", sorted(CHARGE_LIMITS))
async def test_each_currencys_own_bounds_are_accepted(
    client: httpx.AsyncClient, currency: str
) -> None:
    owner = await register(client, role="client")
    limits = CHARGE_LIMITS[currency]
    for cents in (limits.min_cents, limits.max_cents):
        body = _project(budgetCents=cents, currency=currency)
        response = await client.post("/api/projects", json=body, headers=owner.headers)
        assert response.status_code == 201, response.text


async def test_thirty_pence_is_a_budget_but_thirty_cents_is_not(client: httpx.AsyncClient) -> None:
    owner = await register(client, role="client")
    gbp = await client.post(
        "/api/projects", json=_project(budgetCents=30, currency="GBP"), headers=owner.headers
    )
    usd = await client.post(
        "/api/projects", json=_project(budgetCents=30, currency="USD"), headers=owner.headers
    )
    assert gbp.status_code == 201, gbp.text
    assert usd.status_code == 422 and error_fields(usd) == ["budgetCents"]


async def test_changing_the_currency_under_a_budget_is_checked(client: httpx.AsyncClient) -> None:
    owner = await register(client, role="client")
    created = await client.post(
        "/api/projects", json=_project(budgetCents=40, currency="GBP"), headers=owner.headers
    )
    assert created.status_code == 201, created.text
    response = await client.patch(
        f"/api/projects/{created.json()['data']['id']}",
        json={"currency": "USD"},
        headers=owner.headers,
    )
    assert response.status_code == 422, response.text
    assert error_fields(response) == ["currency"]


@pytest.mark.parametrize(
    ("currency", "bid", "field"),
    [
        ("USD", {"amountCents": 49}, "amountCents"),
        ("GBP", {"amountCents": 29}, "amountCents"),
        ("EUR", {"amountCents": 100_000_000}, "amountCents"),
        ("GBP", {"amount": "0.29"}, "amount"),
        ("USD", {"amount": "1000000.00"}, "amount"),
    ],
)
async def test_a_bid_stripe_cannot_charge_is_refused(
    client: httpx.AsyncClient, currency: str, bid: dict[str, object], field: str
) -> None:
    owner = await register(client, role="client")
    worker = await register(client, role="worker")
    project = await client.post(
        "/api/projects", json=_project(budgetCents=5000, currency=currency), headers=owner.headers
    )
    assert project.status_code == 201, project.text
    response = await client.post(
        f"/api/projects/{project.json()['data']['id']}/bids",
        json={**bid, "deliveryDays": 3, "proposal": "Cheap."},
        headers=worker.headers,
    )
    assert response.status_code == 422, response.text
    assert error_fields(response) == [field]
