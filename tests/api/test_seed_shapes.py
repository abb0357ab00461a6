"""A client written against the seed's API plays a whole gig with the seed's request shapes:
names in two parts, money as decimals in the major unit, its own field names. Bodies are sent
as raw JSON text, so the numbers are exactly what such a client puts on the wire."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import stripe

from tests.api.conftest import PASSWORD, Account, bearer, error_fields, unique_email
from tests.api.gigs import row_counts
from tests.api.stripe_support import confirm_card, send_webhook, stripe_event

INTENT = "/api/payments/create-intent"


async def post(
    client: httpx.AsyncClient, url: str, body: str, account: Account | None = None
) -> httpx.Response:
    headers = {"Content-Type": "application/json", **(account.headers if account else {})}
    return await client.post(url, content=body, headers=headers)


def data(response: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()["data"]
    return body


async def seed_register(client: httpx.AsyncClient, role: str, first: str, last: str) -> Account:
    email = unique_email(role)
    body = {
        "email": email,
        "password": PASSWORD,
        "firstName": first,
        "lastName": last,
        "role": role,
    }
    session = data(await post(client, "/api/auth/register", json.dumps(body)))
    user = session["user"]
    assert (user["firstName"], user["lastName"], user["name"]) == (first, last, f"{first} {last}")
    return Account(
        id=uuid.UUID(user["id"]),
        email=email,
        password=PASSWORD,
        role=role,
        access_token=session["accessToken"],
        refresh_token=session["refreshToken"],
    )


def deadline() -> str:
    return (datetime.now(UTC) + timedelta(days=30)).isoformat()


def project_text(budget: str, **extra: Any) -> str:
    """The seed's project body with `budget` as raw JSON text (a number or a quoted string)."""
    fields = {
        "title": "Port the billing service",
        "description": "From Express to FastAPI.",
        "skills": ["Python", "Stripe"],
        "deadline": deadline(),
        **extra,
    }
    return json.dumps(fields)[:-1] + f', "budget": {budget}}}'


async def seed_gig(client: httpx.AsyncClient) -> dict[str, Any]:
    """Registered with two-part names, a project with a decimal budget, a decimal bid accepted,
    and booked with the seed's decimal `agreedAmount`."""
    owner = await seed_register(client, "client", "Cleo", "Client")
    worker = await seed_register(client, "worker", "Wim", "van der Worker")
    project = data(await post(client, "/api/projects", project_text("1500.00"), owner))
    assert (project["budgetCents"], project["currency"]) == (150_000, "USD")
    assert project["requiredSkills"] == ["Python", "Stripe"]
    bid = data(
        await post(
            client,
            f"/api/projects/{project['id']}/bids",
            '{"amount": 1200.50, "deliveryTime": 14, "proposal": "Done it twice."}',
            worker,
        )
    )
    assert (bid["amountCents"], bid["currency"], bid["deliveryDays"]) == (120_050, "USD", 14)
    accepted = await client.post(
        f"/api/projects/{project['id']}/bids/{bid['id']}/accept", headers=owner.headers
    )
    assert accepted.status_code == 200, accepted.text
    booking_text = (
        f'{{"projectId": "{project["id"]}", "workerId": "{worker.id}", "agreedAmount": 1200.50}}'
    )
    booking = data(await post(client, "/api/bookings", booking_text, owner))
    assert booking["agreedAmountCents"] == 120_050
    assert booking["escrow"]["amountCents"] == 120_050
    return {"owner": owner, "worker": worker, "project": project, "booking": booking}


def intent_text(
    gig: dict[str, Any], *, payee: str | None = None, amount: str, currency: str
) -> str:
    return (
        f'{{"bookingId": "{gig["booking"]["id"]}", "payeeId": "{payee or gig["worker"].id}", '
        f'"amount": {amount}, "currency": "{currency}"}}'
    )


async def test_a_seed_client_plays_a_whole_gig_unchanged(
    client: httpx.AsyncClient,
    stripe_api: stripe.StripeClient,
    db: asyncpg.Connection,
    webhook_secret: str,
) -> None:
    gig = await seed_gig(client)
    owner, worker = gig["owner"], gig["worker"]
    me = data(await client.get("/api/auth/me", headers=owner.headers), 200)
    assert (me["firstName"], me["lastName"]) == ("Cleo", "Client")
    profile = data(await client.get("/api/users/me/profile", headers=worker.headers), 200)
    assert (profile["firstName"], profile["lastName"]) == ("Wim", "van der Worker")

    intent = data(
        await post(client, INTENT, intent_text(gig, amount='"1200.50"', currency="usd"), owner)
    )
    assert (intent["amountCents"], intent["feeCents"], intent["netCents"]) == (
        120_050,
        12_005,
        108_045,
    )
    at_stripe = await stripe_api.v1.payment_intents.retrieve_async(intent["paymentIntentId"])
    assert (at_stripe.amount, at_stripe.currency) == (120_050, "usd")

    paid = await confirm_card(stripe_api, intent["paymentIntentId"])
    hook = await send_webhook(
        client, stripe_event("payment_intent.succeeded", paid), secret=webhook_secret
    )
    assert hook.json()["data"]["outcome"] == "applied"
    # The seed's own status call: PUT /api/projects/:id/status {status}.
    project_url = f"/api/projects/{gig['project']['id']}/status"
    for status in ("in_progress", "delivered"):
        moved = await client.put(project_url, json={"status": status}, headers=worker.headers)
        assert moved.status_code == 200, moved.text
    escrow_id = gig["booking"]["escrow"]["id"]
    released = await client.post(f"/api/escrow/{escrow_id}/release", headers=owner.headers)
    assert released.status_code == 200, released.text
    for reviewer in (owner, worker):
        # The seed's exact body: the project is the reviewer's one completed, unreviewed gig.
        review = {"rating": 5, "comment": "Smooth."}
        made = data(await post(client, "/api/reviews", json.dumps(review), reviewer))
        assert made["projectId"] == gig["project"]["id"]
    # Nothing left to review: a body without the project has nothing to mean.
    again = await post(client, "/api/reviews", json.dumps(review), owner)
    assert again.status_code == 422, again.text
    assert [d["field"] for d in again.json()["error"]["details"]] == ["projectId"]
    held = await db.fetchrow(
        "SELECT status, amount_cents FROM escrow_holds WHERE id = $1", uuid.UUID(escrow_id)
    )
    assert held is not None
    assert (held["status"], held["amount_cents"]) == ("released", 120_050)


@pytest.mark.parametrize(
    ("amount", "currency", "payee", "fields"),
    [
        ("1200.51", "USD", None, ["amount"]),
        ('"1200.49"', "USD", None, ["amount"]),
        # The agreed amount's cents, sent where the seed sends dollars: a 100x charge refused.
        ("120050", "USD", None, ["amount"]),
        ("1200.505", "USD", None, ["amount"]),
        ("1200.50", "EUR", None, ["currency"]),
        ("1200.50", "USD", "stranger", ["payeeId"]),
        ("NaN", "USD", None, ["amount"]),
        ("-1200.50", "USD", None, ["amount"]),
    ],
)
async def test_stated_terms_that_differ_from_the_booking_are_422s_and_make_no_intent(
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    amount: str,
    currency: str,
    payee: str | None,
    fields: list[str],
) -> None:
    gig = await seed_gig(client)
    stranger = str(uuid.uuid4()) if payee else None
    response = await post(
        client,
        INTENT,
        intent_text(gig, amount=amount, currency=currency, payee=stranger),
        gig["owner"],
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert error_fields(response) == fields
    booking_id = uuid.UUID(gig["booking"]["id"])
    assert await db.fetchval("SELECT count(*) FROM payments WHERE booking_id = $1", booking_id) == 0
    # The next honest call is the one that makes the booking's intent.
    honest = await post(
        client, INTENT, intent_text(gig, amount="1200.5", currency="USD"), gig["owner"]
    )
    assert honest.status_code == 201, honest.text
    assert honest.json()["data"]["amountCents"] == 120_050


async def test_agreed_amount_is_dollars_not_cents(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    owner = await seed_register(client, "client", "Cleo", "Client")
    worker = await seed_register(client, "worker", "Wim", "Worker")
    project = data(await post(client, "/api/projects", project_text('"1500"'), owner))
    bid = data(
        await post(
            client,
            f"/api/projects/{project['id']}/bids",
            '{"amount": "1200", "deliveryTime": 3, "proposal": "Yes."}',
            worker,
        )
    )
    await client.post(
        f"/api/projects/{project['id']}/bids/{bid['id']}/accept", headers=owner.headers
    )
    before = await row_counts(db)
    head = f'{{"projectId": "{project["id"]}", "workerId": "{worker.id}"'
    for wrong, fields in (
        (', "agreedAmount": 120000}', ["agreedAmount"]),  # the bid's cents, read as dollars
        (', "agreedAmount": 1200.001}', ["agreedAmount"]),
        (', "agreedAmount": 1200, "agreedAmountCents": 1200}', ["agreedAmount"]),
        ("}", ["agreedAmountCents"]),
    ):
        response = await post(client, "/api/bookings", head + wrong, owner)
        assert response.status_code == 422, response.text
        assert error_fields(response) == fields
    assert await row_counts(db) == before
    both = await post(
        client,
        "/api/bookings",
        head + ', "agreedAmount": 1200, "agreedAmountCents": 120000}',
        owner,
    )
    assert data(both)["agreedAmountCents"] == 120_000


@pytest.mark.parametrize(
    ("budget", "extra", "field"),
    [
        ("0.30000000000000004", {}, "budget"),
        # 12.34 once it went through a float: the text has more decimals than USD has.
        ("12.3400000000000001", {}, "budget"),
        ("1500.001", {}, "budget"),
        ("1.5", {"currency": "JPY"}, "currency"),
        ("-1500", {}, "budget"),
        ("0.49", {}, "budget"),
        ("Infinity", {}, "budget"),
        ('"1,500.00"', {}, "budget"),
        ("1500", {"budgetCents": 150_001}, "budget"),
        ("1500", {"requiredSkills": ["Go"]}, "skills"),
    ],
)
async def test_a_budget_that_is_not_an_exact_amount_is_a_422_naming_it(
    client: httpx.AsyncClient, budget: str, extra: dict[str, Any], field: str
) -> None:
    owner = await seed_register(client, "client", "Cleo", "Client")
    response = await post(client, "/api/projects", project_text(budget, **extra), owner)
    assert response.status_code == 422, response.text
    assert response.json()["success"] is False
    assert error_fields(response) == [field]


@pytest.mark.parametrize(
    ("budget", "currency", "cents"),
    [
        ("19.99", "USD", 1999),
        ('"19.99"', "EUR", 1999),
        ("1.5e3", "GBP", 150_000),
        ("12", "USD", 1200),
    ],
)
async def test_a_budget_in_either_notation_is_exact(
    client: httpx.AsyncClient, budget: str, currency: str, cents: int
) -> None:
    owner = await seed_register(client, "client", "Cleo", "Client")
    text = project_text(budget, currency=currency)
    project = data(await post(client, "/api/projects", text, owner))
    assert (project["budgetCents"], project["currency"]) == (cents, currency)


async def test_a_bid_amount_has_the_project_currency_decimals(client: httpx.AsyncClient) -> None:
    owner = await seed_register(client, "client", "Cleo", "Client")
    worker = await seed_register(client, "worker", "Wim", "Worker")
    project = data(await post(client, "/api/projects", project_text("100"), owner))
    url = f"/api/projects/{project['id']}/bids"
    for body, fields in (
        ('{"amount": 99.999, "deliveryTime": 3, "proposal": "x"}', ["amount"]),
        ('{"amount": 99, "amountCents": 9901, "deliveryDays": 3, "proposal": "x"}', ["amount"]),
        ('{"amount": 99, "deliveryDays": 3, "deliveryTime": 4, "proposal": "x"}', ["deliveryTime"]),
        ('{"deliveryTime": 3, "proposal": "x"}', ["amountCents"]),
        ('{"amount": 99, "proposal": "x"}', ["deliveryDays"]),
    ):
        response = await post(client, url, body, worker)
        assert response.status_code == 422, response.text
        assert error_fields(response) == fields


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ({"name": "Ann Lee Smith"}, ("Ann Lee Smith", "Ann", "Lee Smith")),
        ({"firstName": "Cher", "lastName": ""}, ("Cher", "Cher", "")),
        ({"name": "Ann L.", "firstName": "Ann", "lastName": "Lee"}, ("Ann L.", "Ann", "Lee")),
    ],
)
async def test_registration_keeps_the_display_name_and_its_parts(
    client: httpx.AsyncClient, names: dict[str, str], expected: tuple[str, str, str]
) -> None:
    body = {"email": unique_email(), "password": PASSWORD, "role": "worker", **names}
    session = data(await client.post("/api/auth/register", json=body))
    me = data(await client.get("/api/auth/me", headers=bearer(session["accessToken"])), 200)
    assert (me["name"], me["firstName"], me["lastName"]) == expected


@pytest.mark.parametrize("names", [{}, {"lastName": "Lee"}, {"firstName": " "}])
async def test_registration_without_a_first_name_is_a_422_naming_it(
    client: httpx.AsyncClient, names: dict[str, str]
) -> None:
    body = {"email": unique_email(), "password": PASSWORD, "role": "worker", **names}
    response = await client.post("/api/auth/register", json=body)
    assert response.status_code == 422, response.text
    assert error_fields(response) == ["firstName"]


async def test_a_dispute_takes_the_seed_reason_and_evidence_strings(
    client: httpx.AsyncClient, stripe_api: stripe.StripeClient, webhook_secret: str
) -> None:
    gig = await seed_gig(client)
    owner = gig["owner"]
    intent = data(
        await post(client, INTENT, intent_text(gig, amount="1200.50", currency="USD"), owner)
    )
    paid = await confirm_card(stripe_api, intent["paymentIntentId"])
    await send_webhook(
        client, stripe_event("payment_intent.succeeded", paid), secret=webhook_secret
    )
    # The seed's exact body: the project is the client's one gig with money held.
    body = {
        "reason": "The work was never delivered.",
        "evidence": ["Chat log of 3 May", "https://example.com/screenshot.png"],
    }
    dispute = data(await post(client, "/api/disputes", json.dumps(body), owner))
    assert dispute["projectId"] == gig["project"]["id"]
    assert [item["description"] for item in dispute["evidence"]] == body["evidence"]
