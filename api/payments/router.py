"""/api/payments: the client's PaymentIntent for a booking, and the Stripe webhook."""

from __future__ import annotations

from fastapi import Request, Response, status

from api.auth.dependencies import SignedIn
from api.envelope import Envelope, ok
from api.errors import TulifoError
from api.payments import service, webhooks
from api.payments.provider import StripeDep, stripe_lifespan
from api.payments.schemas import CreateIntentRequest, IntentOut, WebhookAck
from api.routers import DomainRouter
from api.schemas import ExactJsonRoute
from api.state import StateDep
from bridges.stripe import WebhookRejected, verify_webhook

router = DomainRouter(
    prefix="/payments", tags=["payments"], lifespan=stripe_lifespan, route_class=ExactJsonRoute
)


@router.post("/create-intent", status_code=status.HTTP_201_CREATED)
async def create_intent(
    body: CreateIntentRequest, caller: SignedIn, stripe: StripeDep, response: Response
) -> Envelope[IntentOut]:
    """The booking's PaymentIntent: 201 when made now, 200 with the same intent afterwards.
    Terms a seed client states (payeeId, amount, currency) must be the booking's: 422 else."""
    intent, created = await service.create_intent(
        pool=caller.pool, stripe=stripe, user=caller.user, booking_id=body.booking_id, stated=body
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return ok(intent)


@router.post("/webhook")
async def stripe_webhook(
    request: Request, state: StateDep, stripe: StripeDep
) -> Envelope[WebhookAck]:
    """Stripe's events, verified on the raw body with the endpoint's signing secret.

    400 for an unsigned, stale or tampered body (Stripe shows it as a failed delivery); 200 for
    every verified event, including ones we ignore and redeliveries (which change nothing).
    """
    payload = await request.body()
    try:
        event = verify_webhook(
            payload,
            request.headers.get("stripe-signature"),
            state.settings.stripe_webhook_secret.get_secret_value(),
        )
    except WebhookRejected as exc:
        raise TulifoError(exc.message, code=exc.code) from exc
    return ok(await webhooks.handle_event(pool=state.pool, stripe=stripe, event=event))
