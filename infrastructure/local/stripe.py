"""localstripe, the embedded Stripe of `tulifo dev` (DESIGN.md §5), and its webhook delivery.

localstripe is a stateful fake of the Stripe API that also signs and POSTs webhook events itself
(`POST /_config/webhooks/<name>` with url, secret and events): confirming a PaymentIntent there
sends `payment_intent.succeeded` (or `payment_intent.payment_failed` for a declined card) to our
`/api/payments/webhook`, signed `t=<created>,v1=<HMAC-SHA256 of "t.body">` like Stripe's. It makes
one attempt, ~1 s after the event, and never retries. It never sends `charge.refunded`.

It runs as `python -m infrastructure.local.stripe_server --port N` (in memory, on 127.0.0.1;
that module says why not as its own `localstripe --port N --from-scratch` script).
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Final

import httpx

from infrastructure.local.probes import LocalServiceError

# The API's webhook route (api/payments/router.py).
WEBHOOK_PATH: Final = "/api/payments/webhook"
# The events api/payments/webhooks.py acts on; a real endpoint is set up with the same list.
WEBHOOK_EVENTS: Final = (
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "charge.refunded",
)
# localstripe keeps one endpoint per name; registering again under it replaces the endpoint.
WEBHOOK_NAME: Final = "tulifo"


def localstripe_argv(port: int) -> list[str]:
    """localstripe in memory on 127.0.0.1:port, by this interpreter."""
    if importlib.util.find_spec("localstripe") is None:
        raise LocalServiceError(
            "no Stripe is configured and localstripe is not installed: "
            "pip install 'tulifo-gig[local]', or set TULIFO_STRIPE_API_KEY"
        )
    return [sys.executable, "-m", "infrastructure.local.stripe_server", "--port", str(port)]


def register_webhook(api_base: str, *, endpoint: str, secret: str, timeout: float = 5.0) -> None:
    """Have localstripe at `api_base` POST our events to `endpoint`, signed with `secret`."""
    try:
        response = httpx.post(
            f"{api_base}/_config/webhooks/{WEBHOOK_NAME}",
            json={"url": endpoint, "secret": secret, "events": list(WEBHOOK_EVENTS)},
            timeout=timeout,
            trust_env=False,
        )
    except httpx.HTTPError as exc:
        raise LocalServiceError(f"could not register the webhook with localstripe: {exc}") from exc
    if response.status_code != 200:
        raise LocalServiceError(
            f"localstripe refused the webhook registration: HTTP {response.status_code} "
            f"{response.text[:200]}"
        )
