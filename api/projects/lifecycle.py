"""The project state machine as data: every move a project's status makes, who makes it and
through which route. The one place these rules live; pure, so every rule is testable without a
database. Status writes go through `api/projects/repository.py` `move_status`, which refuses an
edge that is not here.

    open ─accept a bid─▶ awarded ─worker starts─▶ in_progress ─worker delivers─▶ delivered
                                                       ▲                                │
                                                       └──── client requests changes ───┤
                                        client accepts (or releases the escrow) ─▶ completed
    client cancels: open | awarded | in_progress ─▶ cancelled
    a party opens a dispute: awarded | in_progress | delivered | completed ─▶ disputed
    an admin resolves it: disputed ─▶ completed (release, split) | cancelled (refund)
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final, Literal, NamedTuple, cast

from api.errors import Conflict, Forbidden
from api.moves import status_changed

Party = Literal["client", "worker"]
Actor = Literal["client", "worker", "admin", "system"]
# The route a move is made through: only "status" moves are PUT /api/projects/{id}/status's to
# make; the others each sit behind their own endpoint's rules.
How = Literal["status", "accept_bid", "open_dispute", "resolve_dispute", "release_escrow"]

STATUSES: Final = (
    "open",
    "awarded",
    "in_progress",
    "delivered",
    "completed",
    "cancelled",
    "disputed",
)


class Move(NamedTuple):
    source: str
    target: str
    actor: Actor
    how: How


MOVES: Final[tuple[Move, ...]] = (
    Move("open", "awarded", "client", "accept_bid"),
    Move("awarded", "in_progress", "worker", "status"),
    Move("in_progress", "delivered", "worker", "status"),
    # The client sends a delivery back instead of accepting it: a dispute should not be the
    # only answer to "almost done".
    Move("delivered", "in_progress", "client", "status"),
    Move("delivered", "completed", "client", "status"),
    Move("delivered", "completed", "client", "release_escrow"),
    # Cancelling is refused once the work is delivered: from then on the client either accepts
    # it or opens a dispute, so a worker's delivered work cannot be cancelled away. A cancel
    # whose refund had to wait for Stripe is this same move, finished once the refund is made.
    Move("open", "cancelled", "client", "status"),
    Move("awarded", "cancelled", "client", "status"),
    Move("in_progress", "cancelled", "client", "status"),
    # Either party may dispute once someone is booked, even after completion (the work turned
    # out not to be what was accepted); the money has to be still held (api/disputes).
    *(
        Move(source, "disputed", party, "open_dispute")
        for source in ("awarded", "in_progress", "delivered", "completed")
        for party in ("client", "worker")
    ),
    Move("disputed", "completed", "admin", "resolve_dispute"),
    Move("disputed", "cancelled", "admin", "resolve_dispute"),
)

# (from, to) → the one party that may make the move through PUT /status.
_STATUS_MOVES: Final[dict[tuple[str, str], Party]] = {
    (move.source, move.target): cast(Party, move.actor) for move in MOVES if move.how == "status"
}

_PARTY_NAMES: Final[dict[Party, str]] = {
    "client": "the project's client",
    "worker": "the booked worker",
}


class IllegalMove(RuntimeError):
    """Code asked to write a move the table does not have: a bug, not a user's error (a user's
    illegal move is refused with a 409 or 403 before anything is written)."""


def require_edge(sources: Collection[str], target: str, *, actor: Actor, how: How) -> None:
    """Raise IllegalMove unless every `source` → `target` is a move `actor` makes by `how`."""
    if not sources:
        raise IllegalMove(f"a move to {target} from no status")
    missing = sorted(s for s in sources if Move(s, target, actor, how) not in MOVES)
    if missing:
        raise IllegalMove(f"no project move {missing} → {target} by the {actor} through {how}")


def stale(
    project_id: object, sources: Collection[str], target: str, current: str | None
) -> Conflict:
    """The answer when the project was no longer in the status the move was decided from."""
    return status_changed(
        what="project",
        code="PROJECT_STATUS_CHANGED",
        id_key="projectId",
        row_id=project_id,
        status_key="currentStatus",
        current=current,
        sources=sources,
        target=target,
    )


def terminal_statuses() -> frozenset[str]:
    """Statuses no move leaves."""
    return frozenset(STATUSES) - {move.source for move in MOVES}


def allowed_moves(status: str, party: Party | None) -> list[str]:
    """The statuses `party` may move a project in `status` to through PUT /status."""
    return [to for (frm, to), who in _STATUS_MOVES.items() if frm == status and who == party]


def check_move(*, current: str, target: str, party: Party | None) -> None:
    """Raise unless `party` may move the project from `current` to `target` through PUT /status.

    A move that exists for the other party is a 403 (right move, wrong person); a move that
    exists for no one is a 409 that lists what the caller may do instead.
    """
    owner = _STATUS_MOVES.get((current, target))
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
