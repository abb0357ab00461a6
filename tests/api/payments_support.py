"""The money helpers' old home, kept so that code written against it keeps importing: the gig and
its factories live in `tests.api.gigs`, Stripe's side in `tests.api.stripe_support`. New tests
import from those."""

from __future__ import annotations

from tests.api.gigs import Gig, book_gig, create_intent, funded_gig, make_admin, move, pay
from tests.api.stripe_support import (
    LOCALSTRIPE,
    WEBHOOK,
    confirm_card,
    refunds_at_stripe,
    send_webhook,
    signed,
    start_localstripe,
    stripe_client,
    stripe_event,
)

__all__ = [
    "LOCALSTRIPE",
    "WEBHOOK",
    "Gig",
    "book_gig",
    "confirm_card",
    "create_intent",
    "funded_gig",
    "make_admin",
    "move",
    "pay",
    "refunds_at_stripe",
    "send_webhook",
    "signed",
    "start_localstripe",
    "stripe_client",
    "stripe_event",
]
