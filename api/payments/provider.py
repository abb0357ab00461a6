"""The process's Stripe client for the API: made once at startup, handed out as `StripeDep`,
and Stripe failures turned into answers a client can act on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from api.errors import ServiceUnavailable, TulifoError
from api.state import AppState
from bridges.stripe import StripeFailure, StripeGateway


class PaymentProviderError(TulifoError):
    """Stripe refused a request of ours; repeating it will not help (a bug or a config error)."""

    status_code = 502
    code = "PAYMENT_PROVIDER_ERROR"


@asynccontextmanager
async def stripe_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Runs inside the application's lifespan (router lifespans nest in it), after AppState."""
    state: AppState = app.state.tulifo
    gateway = StripeGateway.from_settings(state.settings)
    app.state.stripe_gateway = gateway
    try:
        yield
    finally:
        await gateway.aclose()


async def get_stripe(request: Request) -> StripeGateway:
    gateway: StripeGateway = request.app.state.stripe_gateway
    return gateway


StripeDep = Annotated[StripeGateway, Depends(get_stripe)]


def provider_error(exc: StripeFailure) -> TulifoError:
    """503 (try again later, nothing changed) or 502 (Stripe refused; nothing changed).

    A 503 says when to try again both as the Retry-After header and in the envelope's details,
    for clients that only read the body."""
    if exc.retryable:
        return ServiceUnavailable(
            "the payment provider is unavailable; nothing was charged or changed, try again",
            code="PAYMENT_PROVIDER_UNAVAILABLE",
            headers={"Retry-After": str(exc.retry_after)},
            details={"retryAfter": exc.retry_after, "providerCode": exc.code},
        )
    return PaymentProviderError(
        "the payment provider refused the request; nothing was changed",
        details={"providerCode": exc.code},
    )
