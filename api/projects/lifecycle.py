"""The project state machine as data: which party may make which move through
PUT /api/projects/{id}/status. Pure, so every rule is testable without a database.

    open ─accept a bid─▶ awarded ─worker starts─▶ in_progress ─worker delivers─▶ delivered
                                                       ▲                                │
                                                       └──── client requests changes ───┤
                                                                client accepts ─▶ completed
    client cancels: open | awarded | in_progress ─▶ cancelled

Moves made elsewhere, each under its own endpoint's rules: open→awarded by accepting a bid
(api/bids); delivered→completed also by releasing the escrow, any→disputed by opening a dispute,
disputed→completed|cancelled by resolving it (payments/escrow/disputes domains).
"""

from __future__ import annotations

from typing import Final, Literal

from api.errors import Conflict, Forbidden

Party = Literal["client", "worker"]

# (from, to) → the one party that may make the move here.
MOVES: Final[dict[tuple[str, str], Party]] = {
    ("awarded", "in_progress"): "worker",
    ("in_progress", "delivered"): "worker",
    # The client sends a delivery back instead of accepting it: a dispute should not be the
    # only answer to "almost done".
    ("delivered", "in_progress"): "client",
    ("delivered", "completed"): "client",
    # Cancelling is refused once the work is delivered: from then on the client either accepts
    # it or opens a dispute, so a worker's delivered work cannot be cancelled away.
    ("open", "cancelled"): "client",
    ("awarded", "cancelled"): "client",
    ("in_progress", "cancelled"): "client",
}

_PARTY_NAMES: Final[dict[Party, str]] = {
    "client": "the project's client",
    "worker": "the booked worker",
}


def allowed_moves(status: str, party: Party | None) -> list[str]:
    """The statuses `party` may move a project in `status` to, here."""
    return [to for (frm, to), who in MOVES.items() if frm == status and who == party]


def check_move(*, current: str, target: str, party: Party | None) -> None:
    """Raise unless `party` may move the project from `current` to `target`.

    A move that exists for the other party is a 403 (right move, wrong person); a move that
    exists for no one is a 409 that lists what the caller may do instead.
    """
    owner = MOVES.get((current, target))
    if owner is not None and owner == party:
        return
    details = {
        "currentStatus": current,
        "requestedStatus": target,
        "allowed": allowed_moves(current, party),
    }
    if owner is not None:
        raise Forbidden(
            f"only {_PARTY_NAMES[owner]} may move a project from {current} to {target}",
            details=details,
        )
    raise Conflict(
        f"a project cannot move from {current} to {target}{_hint(current, target)}",
        code="ILLEGAL_TRANSITION",
        details=details,
    )


def _hint(current: str, target: str) -> str:
    if target == "awarded":
        return " here; accept a bid to award it"
    if target == "disputed":
        return " here; open a dispute with POST /api/disputes"
    if current == "delivered" and target == "cancelled":
        return "; accept the delivery or open a dispute"
    return ""
