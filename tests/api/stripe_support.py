"""Stripe for tests: localstripe as a process, the stripe library speaking to it as a browser's
Stripe.js (confirming a card) or the dashboard would, and Stripe's webhook deliveries, signed with
the stripe library's own helper."""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import stripe

from infrastructure.processes import ManagedProcess, free_port, wait_for_port
from infrastructure.settings import Settings

LOCALSTRIPE = Path(sys.executable).parent / "localstripe"
WEBHOOK = "/api/payments/webhook"


@contextmanager
def start_localstripe(log_dir: Path) -> Iterator[str]:
    port = free_port()
    # --from-scratch: never load the store another run left in /tmp/localstripe.pickle.
    proc = ManagedProcess.spawn(
        "localstripe",
        [str(LOCALSTRIPE), "--port", str(port), "--from-scratch"],
        log_path=log_dir / "localstripe.log",
    )
    try:
        wait_for_port("127.0.0.1", port, deadline_s=30, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


@asynccontextmanager
async def stripe_client(api_base: str) -> AsyncIterator[stripe.StripeClient]:
    """The stripe library speaking to localstripe, as a browser's Stripe.js or the Stripe
    dashboard would act on payments (confirming, refunding outside our API)."""
    http = stripe.HTTPXClient()
    try:
        yield stripe.StripeClient(
            "sk_test_tulifo_tests",
            base_addresses={"api": api_base},
            http_client=http,
            max_network_retries=0,
        )
    finally:
        await http.close_async()  # type: ignore[no-untyped-call]


async def confirm_card(
    sc: stripe.StripeClient, intent_id: str, *, card: str = "pm_card_visa"
) -> dict[str, Any]:
    """What Stripe.js does in the client's browser: attach a card and confirm. A declined card
    leaves the intent requiring another payment method. Returns the intent as Stripe has it."""
    await sc.v1.payment_intents.update_async(intent_id, params={"payment_method": card})
    with suppress(stripe.CardError):
        await sc.v1.payment_intents.confirm_async(intent_id)
    intent = await sc.v1.payment_intents.retrieve_async(intent_id)
    return intent.to_dict()


def stripe_event(
    event_type: str, obj: dict[str, Any], *, event_id: str | None = None
) -> dict[str, Any]:
    """An event as Stripe delivers it to a webhook endpoint."""
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "type": event_type,
        "data": {"object": obj},
    }


def signed(payload: str, secret: str, *, timestamp: int | None = None) -> dict[str, str]:
    header = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp)
    return {"Stripe-Signature": header, "Content-Type": "application/json"}


async def send_webhook(
    http: httpx.AsyncClient, event: dict[str, Any], *, secret: str
) -> httpx.Response:
    payload = json.dumps(event)
    return await http.post(WEBHOOK, content=payload, headers=signed(payload, secret))


async def refunds_at_stripe(sc: stripe.StripeClient, intent_id: str) -> list[int]:
    """The amounts Stripe refunded on an intent, smallest first."""
    refunds = await sc.v1.refunds.list_async(params={"payment_intent": intent_id, "limit": 100})
    return sorted(r.amount for r in refunds.data)


# Outage tests: Stripe's timeouts short enough to keep a test quick, and the Retry-After they
# expect on the 503 of a Stripe that does not answer.
OUTAGE_RETRY_AFTER = 3


def outage_settings(settings: Settings, **update: Any) -> Settings:
    """`settings` with short Stripe timeouts (one retry, a 1 s connect, a 3 s read)."""
    return settings.model_copy(
        update={
            "stripe_connect_timeout_seconds": 1.0,
            "stripe_read_timeout_seconds": 3.0,
            "stripe_max_network_retries": 1,
            "stripe_retry_after_seconds": OUTAGE_RETRY_AFTER,
            **update,
        }
    )


def connections_in_use(app: Any) -> int:
    """Pooled connections the API holds now."""
    pool = app.state.tulifo.pool
    return int(pool.get_size() - pool.get_idle_size())
