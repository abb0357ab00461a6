"""The Stripe boundary: every call we make to Stripe, and webhook verification.

Calls go through the library's async HTTP client (httpx), never blocking the event loop, and
every write carries an idempotency key derived from our own ids, so a retry after a timeout or a
crash returns the object the first attempt made instead of making a second one.

Callers never hold a database connection or a row lock while a call is in flight: a Stripe
that hangs would otherwise hold the pool with it (DESIGN.md §5). Every call has a connect and a
read timeout, and the whole call (the library's retries included) a deadline; a Stripe that does
not answer within it is a retryable `StripeFailure`, which the API answers 503 with Retry-After.

`settings.stripe_api_base` points the client at another server (localstripe in development and
tests). With no base set and the development placeholder key, no request leaves the process:
that key cannot authenticate against api.stripe.com anyway, and a test must never reach it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import httpx
import stripe

from infrastructure.settings import DEV_STRIPE_API_KEY, Settings

log = logging.getLogger(__name__)

# Defaults of the TULIFO_STRIPE_* settings (infrastructure/settings.py), for a gateway made
# without them (tests, scripts).
CONNECT_TIMEOUT_SECONDS: Final = 2.0
READ_TIMEOUT_SECONDS: Final = 10.0
MAX_NETWORK_RETRIES: Final = 1
RETRY_AFTER_SECONDS: Final = 5
# The longest the library waits between two tries (stripe._http_client.HTTPClient.MAX_DELAY).
_MAX_RETRY_DELAY_SECONDS: Final = 5.0
# Stripe's documented default: a signed webhook older than 5 minutes is refused (replay defence).
WEBHOOK_TOLERANCE_SECONDS: Final = 300


class StripeFailure(Exception):
    """A Stripe call did not do what we asked. `retryable`: the same call may work later, after
    about `retry_after` seconds. A retryable failure of a write may still have been applied by
    Stripe (the answer was lost): retry it with the same idempotency key, never a new one."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        code: str | None = None,
        retry_after: int = RETRY_AFTER_SECONDS,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code
        self.retry_after = retry_after


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
    # Why the latest attempt failed (Stripe's `last_payment_error`: code, decline_code,
    # message, ...), None when none did.
    last_payment_error: dict[str, Any] | None = None


@dataclass(frozen=True)
class Refund:
    id: str
    amount_cents: int
    currency: str
    status: str


_T = TypeVar("_T")


class StripeGateway:
    """The few Stripe operations the marketplace uses, on one client per process."""

    def __init__(
        self,
        *,
        api_key: str,
        api_base: str | None,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
        read_timeout: float = READ_TIMEOUT_SECONDS,
        max_network_retries: int = MAX_NETWORK_RETRIES,
        retry_after: int = RETRY_AFTER_SECONDS,
    ) -> None:
        self._offline = api_base is None and api_key == DEV_STRIPE_API_KEY
        self.retry_after = retry_after
        # httpx's read timeout bounds each wait for bytes, not the whole answer: a server that
        # trickles a byte at a time would never trip it. The deadline bounds the whole call,
        # every try and the library's backoff between them included.
        tries = max_network_retries + 1
        self.deadline_seconds = (
            tries * (connect_timeout + read_timeout)
            + max_network_retries * _MAX_RETRY_DELAY_SECONDS
        )
        self._http = stripe.HTTPXClient(
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout, pool=connect_timeout)
        )
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            http_client=self._http,
            max_network_retries=max_network_retries,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> StripeGateway:
        return cls(
            api_key=settings.stripe_api_key.get_secret_value(),
            api_base=settings.stripe_api_base,
            connect_timeout=settings.stripe_connect_timeout_seconds,
            read_timeout=settings.stripe_read_timeout_seconds,
            max_network_retries=settings.stripe_max_network_retries,
            retry_after=settings.stripe_retry_after_seconds,
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
        intent = await self._call(
            "create payment intent",
            lambda: self._client.v1.payment_intents.create_async(
                params={
                    "amount": amount_cents,
                    "currency": currency.lower(),
                    "capture_method": "automatic",
                    "metadata": metadata,
                },
                options={"idempotency_key": idempotency_key},
            ),
        )
        return _intent(intent)

    async def retrieve_payment_intent(self, intent_id: str) -> PaymentIntent:
        intent = await self._call(
            "retrieve payment intent",
            lambda: self._client.v1.payment_intents.retrieve_async(intent_id),
        )
        return _intent(intent)

    async def cancel_payment_intent(self, intent_id: str, *, idempotency_key: str) -> PaymentIntent:
        """Stop an unpaid intent from being paid. Stripe refuses (not retryable) an intent that
        already succeeded or is processing; a retry under the same key gets the first answer."""
        intent = await self._call(
            "cancel payment intent",
            lambda: self._client.v1.payment_intents.cancel_async(
                intent_id, options={"idempotency_key": idempotency_key}
            ),
        )
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
        refund = await self._call(
            "refund",
            lambda: self._client.v1.refunds.create_async(
                params={
                    "payment_intent": payment_intent_id,
                    "amount": amount_cents,
                    "metadata": metadata,
                },
                options={"idempotency_key": idempotency_key},
            ),
        )
        return Refund(
            id=refund.id,
            amount_cents=int(refund.amount),
            currency=str(refund.currency).upper(),
            status=str(refund.status),
        )

    async def _call(self, action: str, call: Callable[[], Awaitable[_T]]) -> _T:
        """`call` within the deadline; every way it can fail is a StripeFailure."""
        self._refuse_when_offline()
        try:
            async with asyncio.timeout(self.deadline_seconds):
                return await call()
        except TimeoutError as exc:
            log.warning("stripe %s: no answer within %.1f s", action, self.deadline_seconds)
            raise StripeFailure(
                f"Stripe did not answer ({action})",
                retryable=True,
                code="timeout",
                retry_after=self.retry_after,
            ) from exc
        except stripe.StripeError as exc:
            raise _failure(exc, action, retry_after=self.retry_after) from exc

    def _refuse_when_offline(self) -> None:
        if self._offline:
            raise StripeFailure(
                "Stripe is not configured: set TULIFO_STRIPE_API_KEY, or "
                "TULIFO_STRIPE_API_BASE for a local Stripe",
                retryable=True,
                code="not_configured",
                retry_after=self.retry_after,
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
    # A StripeObject, not a dict: attributes, and `to_dict()` for a plain copy.
    error = getattr(intent, "last_payment_error", None)
    return PaymentIntent(
        id=intent.id,
        client_secret=intent.client_secret,
        status=intent.status,
        amount_cents=int(intent.amount),
        currency=str(intent.currency).upper(),
        last_payment_error=error.to_dict() if error else None,
    )


def _failure(exc: stripe.StripeError, action: str, *, retry_after: int) -> StripeFailure:
    # Connection trouble (refused, reset, timed out), rate limits, a concurrent request with the
    # same idempotency key (409) and Stripe's own 5xx pass; anything else is Stripe refusing
    # this request, which the same request will not change.
    unreachable = isinstance(exc, stripe.APIConnectionError)
    retryable = (
        unreachable
        or isinstance(exc, stripe.RateLimitError)
        or (exc.http_status is not None and (exc.http_status == 409 or exc.http_status >= 500))
    )
    log.warning(
        "stripe %s failed: %s", action, exc.user_message or str(exc), extra={"retryable": retryable}
    )
    code = exc.code or ("unreachable" if unreachable else None)
    return StripeFailure(
        f"Stripe could not {action}", retryable=retryable, code=code, retry_after=retry_after
    )
