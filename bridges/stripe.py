"""The Stripe boundary: every call we make to Stripe, and webhook verification.

Calls go through the library's async HTTP client (httpx), never blocking the event loop, and
every write carries an idempotency key derived from our own ids, so a retry after a timeout or a
crash returns the object the first attempt made instead of making a second one.

`settings.stripe_api_base` points the client at another server (localstripe in development and
tests). With no base set and the development placeholder key, no request leaves the process:
that key cannot authenticate against api.stripe.com anyway, and a test must never reach it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Final

import stripe

from infrastructure.settings import DEV_STRIPE_API_KEY, Settings

log = logging.getLogger(__name__)

# We hold a row lock on the escrow while a Stripe write is in flight; Stripe's own default
# (80 s) would stall every other request on that escrow for as long.
REQUEST_TIMEOUT_SECONDS: Final = 20.0
# Safe because every write carries an idempotency key: a retried POST is answered from
# Stripe's idempotency cache, it does not charge or refund twice.
MAX_NETWORK_RETRIES: Final = 2
# Stripe's documented default: a signed webhook older than 5 minutes is refused (replay defence).
WEBHOOK_TOLERANCE_SECONDS: Final = 300


class StripeFailure(Exception):
    """A Stripe call did not do what we asked. `retryable`: the same call may work later."""

    def __init__(self, message: str, *, retryable: bool, code: str | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code


class WebhookRejected(Exception):
    """A webhook body we must not act on; `code` says why (for the 400 answer)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class PaymentIntent:
    id: str
    client_secret: str
    status: str
    amount_cents: int
    currency: str


@dataclass(frozen=True)
class Refund:
    id: str
    amount_cents: int
    currency: str
    status: str


class StripeGateway:
    """The few Stripe operations the marketplace uses, on one client per process."""

    def __init__(self, *, api_key: str, api_base: str | None) -> None:
        self._offline = api_base is None and api_key == DEV_STRIPE_API_KEY
        self._http = stripe.HTTPXClient(timeout=REQUEST_TIMEOUT_SECONDS)
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            http_client=self._http,
            max_network_retries=MAX_NETWORK_RETRIES,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> StripeGateway:
        return cls(
            api_key=settings.stripe_api_key.get_secret_value(),
            api_base=settings.stripe_api_base,
        )

    async def aclose(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]

    async def create_payment_intent(
        self,
        *,
        amount_cents: int,
        currency: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> PaymentIntent:
        """A PaymentIntent captured automatically on confirmation (funds then sit on the
        platform balance until we pay the worker or refund the client)."""
        self._refuse_when_offline()
        try:
            intent = await self._client.v1.payment_intents.create_async(
                params={
                    "amount": amount_cents,
                    "currency": currency.lower(),
                    "capture_method": "automatic",
                    "metadata": metadata,
                },
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            raise _failure(exc, "create payment intent") from exc
        return _intent(intent)

    async def retrieve_payment_intent(self, intent_id: str) -> PaymentIntent:
        self._refuse_when_offline()
        try:
            intent = await self._client.v1.payment_intents.retrieve_async(intent_id)
        except stripe.StripeError as exc:
            raise _failure(exc, "retrieve payment intent") from exc
        return _intent(intent)

    async def refund(
        self,
        *,
        payment_intent_id: str,
        amount_cents: int,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> Refund:
        """Give `amount_cents` of a succeeded PaymentIntent back to the card it came from."""
        self._refuse_when_offline()
        try:
            refund = await self._client.v1.refunds.create_async(
                params={
                    "payment_intent": payment_intent_id,
                    "amount": amount_cents,
                    "metadata": metadata,
                },
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            raise _failure(exc, "refund") from exc
        return Refund(
            id=refund.id,
            amount_cents=int(refund.amount),
            currency=str(refund.currency).upper(),
            status=str(refund.status),
        )

    def _refuse_when_offline(self) -> None:
        if self._offline:
            raise StripeFailure(
                "Stripe is not configured: set TULIFO_STRIPE_API_KEY, or "
                "TULIFO_STRIPE_API_BASE for a local Stripe",
                retryable=True,
                code="not_configured",
            )


def verify_webhook(
    payload: bytes,
    signature: str | None,
    secret: str,
    *,
    tolerance: int = WEBHOOK_TOLERANCE_SECONDS,
) -> dict[str, Any]:
    """The event in a webhook body, once its `Stripe-Signature` proves Stripe sent it recently.

    The signature is an HMAC-SHA256 of f"{t}.{raw body}" with the endpoint's signing secret, so
    it must be checked on the bytes as received, before any JSON parsing.
    """
    if not signature:
        raise WebhookRejected("MISSING_SIGNATURE", "the Stripe-Signature header is missing")
    try:
        # Stripe signs the UTF-8 text; the library would raise a bare UnicodeDecodeError.
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebhookRejected("INVALID_PAYLOAD", "the webhook body is not UTF-8") from exc
    try:
        stripe.WebhookSignature.verify_header(text, signature, secret, tolerance)
    except stripe.SignatureVerificationError as exc:
        if _is_stale(signature, tolerance):
            raise WebhookRejected(
                "STALE_SIGNATURE",
                f"the signature timestamp is more than {tolerance} s from now",
            ) from exc
        raise WebhookRejected(
            "INVALID_SIGNATURE", "the Stripe-Signature does not match the body"
        ) from exc
    # The library only refuses old timestamps; one far ahead of our clock is as suspect.
    if _is_stale(signature, tolerance):
        raise WebhookRejected(
            "STALE_SIGNATURE", f"the signature timestamp is more than {tolerance} s from now"
        )
    # Parsed here rather than by stripe.Webhook.construct_event, which fails with an
    # AttributeError (a 500) on a signed body that is JSON but not an object.
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise WebhookRejected("INVALID_PAYLOAD", "the webhook body is not JSON") from exc
    except RecursionError as exc:  # nested deeper than the parser goes: no event of Stripe's
        raise WebhookRejected("INVALID_PAYLOAD", "the webhook body is nested too deep") from exc
    if not isinstance(body, dict):
        raise WebhookRejected("INVALID_PAYLOAD", "the webhook body is not a Stripe event")
    if not isinstance(body.get("id"), str) or not isinstance(body.get("type"), str):
        raise WebhookRejected("INVALID_PAYLOAD", "the webhook body is not a Stripe event")
    data = body.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise WebhookRejected("INVALID_PAYLOAD", "the webhook event carries no data.object")
    return body


def _is_stale(signature: str, tolerance: int) -> bool:
    for item in signature.split(","):
        key, _, value = item.partition("=")
        if key.strip() == "t":
            try:
                return abs(time.time() - int(value)) > tolerance
            except ValueError:
                return False
    return False


def _intent(intent: Any) -> PaymentIntent:
    return PaymentIntent(
        id=intent.id,
        client_secret=intent.client_secret,
        status=intent.status,
        amount_cents=int(intent.amount),
        currency=str(intent.currency).upper(),
    )


def _failure(exc: stripe.StripeError, action: str) -> StripeFailure:
    # Connection trouble, rate limits and Stripe's own 5xx pass; anything else is Stripe
    # refusing this request, which the same request will not change.
    retryable = isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError) or (
        exc.http_status is not None and exc.http_status >= 500
    )
    log.warning(
        "stripe %s failed: %s", action, exc.user_message or str(exc), extra={"retryable": retryable}
    )
    return StripeFailure(f"Stripe could not {action}", retryable=retryable, code=exc.code)
