"""bridges/stripe.py: webhook verification, and the Stripe calls against localstripe."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import stripe

from bridges.stripe import (
    StripeFailure,
    StripeGateway,
    WebhookRejected,
    verify_webhook,
)
from infrastructure.processes import free_port
from infrastructure.settings import DEV_STRIPE_API_KEY, Settings
from tests.api.stripe_support import start_localstripe, stripe_client

SECRET = "whsec_test_gateway"
EVENT = {
    "id": "evt_1",
    "object": "event",
    "type": "payment_intent.succeeded",
    "data": {"object": {"id": "pi_1", "amount": 1005, "currency": "usd"}},
}


def _documented_signature(payload: str, secret: str, timestamp: int) -> str:
    """Stripe's documented scheme, computed by hand: HMAC-SHA256 of f"{t}.{payload}"."""
    digest = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def _rejection(payload: str, header: str | None) -> str:
    with pytest.raises(WebhookRejected) as raised:
        verify_webhook(payload.encode(), header, SECRET)
    return raised.value.code


def test_a_webhook_signed_as_documented_is_accepted() -> None:
    payload = json.dumps(EVENT)
    now = int(time.time())

    by_hand = verify_webhook(payload.encode(), _documented_signature(payload, SECRET, now), SECRET)
    by_library = verify_webhook(
        payload.encode(),
        stripe.WebhookSignature.generate_signature_header(payload, SECRET),
        SECRET,
    )

    assert by_hand == by_library == EVENT


def test_unsigned_stale_future_tampered_and_foreign_signatures_are_refused() -> None:
    payload = json.dumps(EVENT)
    now = int(time.time())
    assert _rejection(payload, None) == "MISSING_SIGNATURE"
    assert _rejection(payload, "") == "MISSING_SIGNATURE"
    assert _rejection(payload, _documented_signature(payload, SECRET, now - 301)) == (
        "STALE_SIGNATURE"
    )
    assert _rejection(payload, _documented_signature(payload, SECRET, now + 301)) == (
        "STALE_SIGNATURE"
    )
    tampered = payload.replace("1005", "1")
    assert _rejection(tampered, _documented_signature(payload, SECRET, now)) == (
        "INVALID_SIGNATURE"
    )
    assert _rejection(payload, _documented_signature(payload, "whsec_other", now)) == (
        "INVALID_SIGNATURE"
    )
    assert _rejection(payload, "v1=abc") == "INVALID_SIGNATURE"
    assert _rejection(payload, f"t={now},v0=abc") == "INVALID_SIGNATURE"


@pytest.mark.parametrize(
    "payload",
    ["not json", "[1, 2]", '"text"', '{"id": "evt_1"}', '{"id": 1, "type": "x", "data": {}}'],
)
def test_a_signed_body_that_is_not_an_event_is_refused(payload: str) -> None:
    header = _documented_signature(payload, SECRET, int(time.time()))
    assert _rejection(payload, header) == "INVALID_PAYLOAD"


def test_a_body_that_is_not_utf8_is_refused_not_crashed_on() -> None:
    header = _documented_signature("x", SECRET, int(time.time()))
    with pytest.raises(WebhookRejected) as raised:
        verify_webhook(b"\xff\xfe", header, SECRET)
    assert raised.value.code == "INVALID_PAYLOAD"


async def test_without_a_base_the_development_key_never_leaves_the_process() -> None:
    gateway = StripeGateway(api_key=DEV_STRIPE_API_KEY, api_base=None)
    try:
        with pytest.raises(StripeFailure) as raised:
            await gateway.create_payment_intent(
                amount_cents=100, currency="USD", metadata={}, idempotency_key="pi-x"
            )
    finally:
        await gateway.aclose()
    assert raised.value.code == "not_configured"


@pytest.fixture(scope="module")
def localstripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with start_localstripe(Path(tmp_path_factory.mktemp("localstripe"))) as url:
        yield url


@pytest.fixture
async def gateway(localstripe: str) -> AsyncIterator[tuple[StripeGateway, list[httpx.Request]]]:
    """A gateway on localstripe, and every request it sends (localstripe ignores
    idempotency keys, so the test reads them off the wire)."""
    sent: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request)

    gw = StripeGateway(api_key="sk_test_gateway", api_base=localstripe)
    gw._http._client_async = httpx.AsyncClient(event_hooks={"request": [record]})
    try:
        yield gw, sent
    finally:
        await gw.aclose()


async def test_an_intent_is_created_with_our_idempotency_key_and_automatic_capture(
    gateway: tuple[StripeGateway, list[httpx.Request]],
) -> None:
    gw, sent = gateway

    intent = await gw.create_payment_intent(
        amount_cents=1005, currency="EUR", metadata={"booking_id": "b-1"}, idempotency_key="pi-b-1"
    )

    assert (intent.amount_cents, intent.currency, intent.status) == (
        1005,
        "EUR",
        "requires_payment_method",
    )
    assert intent.client_secret.startswith(intent.id)
    (request,) = sent
    assert request.headers["Idempotency-Key"] == "pi-b-1"
    form = request.content.decode()
    assert "currency=eur" in form
    assert "capture_method=automatic" in form
    again = await gw.retrieve_payment_intent(intent.id)
    assert (again.id, again.client_secret) == (intent.id, intent.client_secret)


async def test_a_refund_of_a_paid_intent_and_a_refused_refund(
    gateway: tuple[StripeGateway, list[httpx.Request]], localstripe: str
) -> None:
    gw, sent = gateway
    intent = await gw.create_payment_intent(
        amount_cents=2_000, currency="USD", metadata={}, idempotency_key="pi-r"
    )
    async with stripe_client(localstripe) as browser:
        await browser.v1.payment_intents.update_async(
            intent.id, params={"payment_method": "pm_card_visa"}
        )
        await browser.v1.payment_intents.confirm_async(intent.id)

    refund = await gw.refund(
        payment_intent_id=intent.id,
        amount_cents=500,
        metadata={"reason": "dispute"},
        idempotency_key="refund-e-1",
    )

    assert (refund.amount_cents, refund.currency, refund.status) == (500, "USD", "succeeded")
    assert sent[-1].headers["Idempotency-Key"] == "refund-e-1"

    unpaid = await gw.create_payment_intent(
        amount_cents=2_000, currency="USD", metadata={}, idempotency_key="pi-unpaid"
    )
    with pytest.raises(StripeFailure) as raised:
        await gw.refund(
            payment_intent_id=unpaid.id, amount_cents=1, metadata={}, idempotency_key="r-2"
        )
    # Stripe said no: the same request will not work later.
    assert raised.value.retryable is False


async def test_an_unreachable_stripe_is_a_retryable_failure() -> None:
    gw = StripeGateway(api_key="sk_test_x", api_base=f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(StripeFailure) as raised:
            await gw.retrieve_payment_intent("pi_1")
    finally:
        await gw.aclose()
    assert raised.value.retryable is True


async def test_a_stripe_that_never_answers_is_a_retryable_failure_within_the_timeouts() -> None:
    # Listening but never accepting: the kernel completes the connection, nobody answers.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        gw = StripeGateway(
            api_key="sk_test_x",
            api_base=f"http://127.0.0.1:{port}",
            connect_timeout=0.2,
            read_timeout=0.3,
            max_network_retries=0,
            retry_after=7,
        )
        try:
            # Bounded so that a missing timeout fails the test instead of hanging it.
            async with asyncio.timeout(gw.deadline_seconds + 5):
                with pytest.raises(StripeFailure) as raised:
                    await gw.create_payment_intent(
                        amount_cents=100, currency="USD", metadata={}, idempotency_key="pi-s"
                    )
        finally:
            await gw.aclose()
    assert (raised.value.retryable, raised.value.retry_after) == (True, 7)


def test_the_timeouts_come_from_the_settings() -> None:
    settings = Settings(
        stripe_api_base="http://127.0.0.1:1",
        stripe_connect_timeout_seconds=1.5,
        stripe_read_timeout_seconds=4.0,
        stripe_max_network_retries=2,
        stripe_retry_after_seconds=9,
    )
    gw = StripeGateway.from_settings(settings)
    # Three tries of connect + read, and the library's backoff (at most 5 s) between them.
    assert gw.deadline_seconds == 3 * (1.5 + 4.0) + 2 * 5.0
    assert gw.retry_after == 9
