"""The escrow hold state machine as data: every move a hold's status makes and who makes it.
The one place these rules live; pure, so every rule is testable without a database. Status
writes go through `api/escrow/repository.py` `move_hold`, which refuses an edge not here.

    unfunded ─payment lands─▶ funded ─client releases (or the review window lapses)─▶ released
                                │  ─a party disputes─▶ frozen ─admin releases─▶ released
                                │                        │
                                ├─refund pinned─▶ refunding ◀─refund pinned (admin)─┘
                                │                 │  ├─Stripe refunded─▶ refunded | split
                                │                 │  └─Stripe refused─▶ funded | frozen (as it was)
                                └─refunded at Stripe outside the API─▶ refunded

'system' is the platform acting on what Stripe said (a webhook, a refund recorded or refused,
possibly by the retry job); a refund's end state is the system's to write even when an admin or
a client decided it, since only Stripe's answer makes it true.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final, NamedTuple

from api.errors import Conflict
from api.moves import status_changed
from api.projects.lifecycle import Actor, IllegalMove

STATUSES: Final = ("unfunded", "funded", "frozen", "refunding", "released", "refunded", "split")


class Move(NamedTuple):
    source: str
    target: str
    actor: Actor


MOVES: Final[tuple[Move, ...]] = (
    # payment_intent.succeeded (api/payments/webhooks.py).
    Move("unfunded", "funded", "system"),
    # Opening a dispute freezes the money until an admin decides (api/disputes).
    Move("funded", "frozen", "client"),
    Move("funded", "frozen", "worker"),
    # The client accepts the work by paying the worker (api/escrow/service.py).
    Move("funded", "released", "client"),
    # The client left a delivery unanswered for the whole review window: the platform releases
    # it for them (the `auto_release` job, bridges/jobs.py), as the seed's worker service does.
    Move("funded", "released", "system"),
    # A dispute resolved wholly for the worker: no refund, settled at once.
    Move("frozen", "released", "admin"),
    # A refund pinned before Stripe is called (api/escrow/refunds.py): the client cancelling,
    # the platform giving back a payment for an already cancelled project, an admin's
    # resolution with a client share.
    Move("funded", "refunding", "client"),
    Move("funded", "refunding", "system"),
    Move("frozen", "refunding", "admin"),
    # The pinned refund made: a cancellation or a refund resolution, or a split.
    Move("refunding", "refunded", "system"),
    Move("refunding", "split", "system"),
    # Stripe refused it: the hold is back where it was, for another decision.
    Move("refunding", "funded", "system"),
    Move("refunding", "frozen", "system"),
    # The whole charge refunded from Stripe's dashboard (charge.refunded).
    Move("funded", "refunded", "system"),
)

# Timestamp columns each status stamps when a hold reaches it.
STAMPS: Final[dict[str, tuple[str, ...]]] = {
    "funded": ("funded_at",),
    "frozen": (),
    "refunding": (),
    "released": ("released_at",),
    "refunded": ("refunded_at",),
    "split": ("released_at", "refunded_at"),
}


def require_edge(sources: Collection[str], target: str, *, actor: Actor) -> None:
    """Raise IllegalMove unless every `source` → `target` is a move `actor` makes."""
    if not sources:
        raise IllegalMove(f"a hold move to {target} from no status")
    missing = sorted(s for s in sources if Move(s, target, actor) not in MOVES)
    if missing:
        raise IllegalMove(f"no escrow hold move {missing} → {target} by the {actor}")


def stale(
    escrow_id: object, sources: Collection[str], target: str, current: str | None
) -> Conflict:
    """The answer when the hold was no longer in the status the move was decided from."""
    return status_changed(
        what="escrow hold",
        code="ESCROW_STATUS_CHANGED",
        id_key="escrowId",
        row_id=escrow_id,
        status_key="escrowStatus",
        current=current,
        sources=sources,
        target=target,
    )


def terminal_statuses() -> frozenset[str]:
    """Statuses no move leaves: the money is paid out, given back, or both."""
    return frozenset(STATUSES) - {move.source for move in MOVES}
