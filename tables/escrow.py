"""Escrow balances: the fold from a gig's events to where its money is, and its read model.

The table is keyed by project id (a gig: the `gigs` stream's key), one value per gig:

    {"seq": 7, "bookings": {"<booking id>": {<balance>, "movements": [...]}}}

A balance counts integer cents of one hold: `funded` (paid in), `held` (still in escrow),
`released` (gone to the worker's side: `worker_net` + `fee`) and `refunded` (back to the client),
with `funded == held + released + refunded` at every step. Amounts are copied from the events,
never recomputed: the fee was decided once, on the write side (api/money.py).

Order matters (a release before its funding would overdraw), so the fold runs on one gig's events
in sequence order, and `seq` (the last applied) makes a redelivery a no-op (agents/folding.py).
Per party and per day totals are SQL views over the rows written here (migration 0004), so they
cannot drift from them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import asyncpg

from streams.events import Event, PoisonEvent
from tables.sink import Buffered, PostgresSink

# What each event does to a hold; the gig's other events (bids) leave it alone.
MONEY_TYPES: Final = frozenset(
    {
        "booking.created",
        "escrow.funded",
        "escrow.released",
        "escrow.refunded",
        "dispute.opened",
        "dispute.resolved",
    }
)
# The project's own moves: its title and status travel with its money (client_data).
PROJECT_TYPES: Final = frozenset(
    {"project.created", "project.updated", "project.status_changed", "bid.accepted"}
)
TYPES: Final = MONEY_TYPES | PROJECT_TYPES | {"project.delivered"}

# The hold's status after a dispute, as the write side sets it (api/disputes/service.py).
_AFTER_DISPUTE: Final = {"release": "released", "refund": "refunded", "split": "split"}

State = dict[str, Any]
Balance = dict[str, Any]


def new_balance(
    *,
    booking_id: str,
    project_id: str,
    escrow_id: str,
    client_id: str,
    worker_id: str,
    currency: str,
    agreed_cents: int,
) -> Balance:
    return {
        "booking_id": booking_id,
        "project_id": project_id,
        "escrow_id": escrow_id,
        "client_id": client_id,
        "worker_id": worker_id,
        "currency": currency,
        "agreed_cents": agreed_cents,
        "status": "unfunded",
        "funded_cents": 0,
        "held_cents": 0,
        "released_cents": 0,
        "worker_net_cents": 0,
        "fee_cents": 0,
        "refunded_cents": 0,
        "last_sequence": 0,
        "updated_at": None,
        "movements": [],
    }


def apply(state: State | None, event: Event) -> State:
    """`state` after `event` (a copy where it changes); raises PoisonEvent for an event that
    contradicts what the gig's earlier events said."""
    # A gig whose events so far were all of other kinds holds only its sequence.
    state = {"seq": 0, "bookings": {}, **(state or {})}
    data = event.data
    try:
        if event.type in PROJECT_TYPES or event.type == "project.delivered":
            return _with_project(state, event)
        if event.type == "booking.created":
            balance = new_balance(
                booking_id=data["booking_id"],
                project_id=data["project_id"],
                escrow_id=data["escrow_hold_id"],
                client_id=data["client_id"],
                worker_id=data["worker_id"],
                currency=data["currency"],
                agreed_cents=int(data["agreed_amount_cents"]),
            )
            return _with(state, event, balance)
        found = _find(state, data)
        if event.type == "escrow.funded":
            if found is None:
                # The booking's own event was not seen (a stream trimmed before it): the funding
                # event names every party, so the hold can start from it.
                balance = new_balance(
                    booking_id=data["booking_id"],
                    project_id=data["project_id"],
                    escrow_id=data["escrow_id"],
                    client_id=data["client_id"],
                    worker_id=data["worker_id"],
                    currency=data["currency"],
                    agreed_cents=int(data["amount_cents"]),
                )
            else:
                balance = found
            amount = _cents(data, "amount_cents")
            balance = {
                **balance,
                "status": "funded",
                "funded_cents": balance["funded_cents"] + amount,
                "held_cents": balance["held_cents"] + amount,
            }
            return _with(state, event, balance, _movement(event, "funded", amount, 0))
        if found is None:
            raise PoisonEvent(f"{event.type} for a hold this gig never funded")
        balance = found
        if event.type == "escrow.released":
            amount, fee, net = (_cents(data, k) for k in ("amount_cents", "fee_cents", "net_cents"))
            if fee + net != amount:
                raise PoisonEvent(f"escrow.released: fee {fee} + net {net} != amount {amount}")
            balance = _take(balance, amount, event.type)
            balance["released_cents"] += amount
            balance["worker_net_cents"] += net
            balance["fee_cents"] += fee
            if data.get("dispute_id") is None:
                balance["status"] = "released"
            return _with(state, event, balance, _movement(event, "released", amount, fee))
        if event.type == "escrow.refunded":
            amount = _cents(data, "amount_cents")
            balance = _take(balance, amount, event.type)
            balance["refunded_cents"] += amount
            if data.get("dispute_id") is None:
                balance["status"] = "refunded"
            return _with(state, event, balance, _movement(event, "refunded", amount, 0))
        if event.type == "dispute.opened":
            state = _project_status(state, "disputed", event)
            balance = {**balance, "status": "frozen"}
            held = balance["held_cents"]
            return _with(state, event, balance, _movement(event, "disputed", held, 0))
        if event.type == "dispute.resolved":
            state = _project_status(state, data["project_status"], event)
            balance = {**balance, "status": _AFTER_DISPUTE[data["resolution"]]}
            return _with(state, event, balance)
    except (KeyError, TypeError, ValueError) as exc:
        raise PoisonEvent(f"{event.type} data invalid: {type(exc).__name__}: {exc}") from exc
    raise PoisonEvent(f"the escrow fold does not take {event.type}")


def _with_project(state: State, event: Event) -> State:
    """The project's metadata after one of its own moves."""
    data = event.data
    project = dict(state.get("project") or {})
    if event.type == "project.created":
        project.update(
            title=data["title"],
            client_id=data["client_id"],
            budget_cents=data["budget_cents"],
            currency=data["currency"],
            status=data["status"],
            created_at=event.occurred_at.isoformat(),
        )
    elif event.type == "project.updated":
        changed = data.get("project") or {}
        project.update(
            {k: v for k, v in changed.items() if k in ("title", "budget_cents", "currency")}
        )
    elif event.type == "project.status_changed":
        project["status"] = data["to_status"]
    elif event.type == "bid.accepted":
        project.update(status="awarded", worker_id=data["worker_id"])
    elif event.type == "project.delivered":
        project["status"] = "delivered"
    project["updated_at"] = event.occurred_at.isoformat()
    return {**state, "project": project}


def _project_status(state: State, status: str, event: Event) -> State:
    project = {**(state.get("project") or {}), "status": status}
    project["updated_at"] = event.occurred_at.isoformat()
    return {**state, "project": project}


def _find(state: State, data: dict[str, Any]) -> Balance | None:
    bookings: dict[str, Balance] = state["bookings"]
    booking_id = data.get("booking_id")
    if booking_id is not None:
        return bookings.get(booking_id)
    escrow_id = data["escrow_id"]
    return next((b for b in bookings.values() if b["escrow_id"] == escrow_id), None)


def _cents(data: dict[str, Any], field: str) -> int:
    value = data[field]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{field} must be a non-negative integer of cents, not {value!r}")
    return value


def _take(balance: Balance, amount: int, what: str) -> Balance:
    if amount > balance["held_cents"]:
        raise PoisonEvent(f"{what} of {amount} cents, but only {balance['held_cents']} are held")
    return {**balance, "held_cents": balance["held_cents"] - amount}


def _movement(event: Event, kind: str, amount: int, fee: int) -> dict[str, Any]:
    return {
        "event_id": str(event.event_id),
        "kind": kind,
        "amount_cents": amount,
        "fee_cents": fee,
        "occurred_at": event.occurred_at.isoformat(),
    }


def _with(
    state: State, event: Event, balance: Balance, movement: dict[str, Any] | None = None
) -> State:
    balance = {
        **balance,
        "last_sequence": event.sequence or 0,
        "updated_at": event.occurred_at.isoformat(),
        "movements": [*balance["movements"], movement] if movement else balance["movements"],
    }
    return {**state, "bookings": {**state["bookings"], balance["booking_id"]: balance}}


# --- the read model ---------------------------------------------------------------------------

_UPSERT_BALANCE = """
INSERT INTO analytics.escrow_balances AS b (
    booking_id, project_id, escrow_id, client_id, worker_id, currency, agreed_cents, status,
    funded_cents, held_cents, released_cents, worker_net_cents, fee_cents, refunded_cents,
    last_sequence, updated_at, materialized_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, now())
ON CONFLICT (booking_id) DO UPDATE SET
    status = EXCLUDED.status, funded_cents = EXCLUDED.funded_cents,
    held_cents = EXCLUDED.held_cents, released_cents = EXCLUDED.released_cents,
    worker_net_cents = EXCLUDED.worker_net_cents, fee_cents = EXCLUDED.fee_cents,
    refunded_cents = EXCLUDED.refunded_cents, last_sequence = EXCLUDED.last_sequence,
    updated_at = EXCLUDED.updated_at, materialized_at = now()
 WHERE b.last_sequence < EXCLUDED.last_sequence"""

_INSERT_MOVEMENT = """
INSERT INTO analytics.escrow_movements (
    event_id, booking_id, project_id, client_id, worker_id, kind, amount_cents, fee_cents,
    currency, occurred_at, day)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, ($10 AT TIME ZONE 'UTC')::date)
ON CONFLICT (event_id) DO NOTHING"""


# Ids go to asyncpg as the strings the fold keeps: its uuid codec parses them in C, cheaper than a
# `uuid.UUID` per id column per row in Python (~4% of the worker's time when it did).


def balance_row(balance: Balance) -> tuple[Any, ...]:
    return (
        balance["booking_id"],
        balance["project_id"],
        balance["escrow_id"],
        balance["client_id"],
        balance["worker_id"],
        balance["currency"],
        balance["agreed_cents"],
        balance["status"],
        balance["funded_cents"],
        balance["held_cents"],
        balance["released_cents"],
        balance["worker_net_cents"],
        balance["fee_cents"],
        balance["refunded_cents"],
        balance["last_sequence"],
        datetime.fromisoformat(balance["updated_at"]),
    )


def movement_rows(balance: Balance, only: set[str] | None = None) -> list[tuple[Any, ...]]:
    """Rows of the balance's movements (those of the events in `only`, when given)."""
    return [
        (
            m["event_id"],
            balance["booking_id"],
            balance["project_id"],
            balance["client_id"],
            balance["worker_id"],
            m["kind"],
            m["amount_cents"],
            m["fee_cents"],
            balance["currency"],
            datetime.fromisoformat(m["occurred_at"]),
        )
        for m in balance["movements"]
        if only is None or m["event_id"] in only
    ]


class EscrowSink(PostgresSink):
    """Writes each gig's balances and movements; safe to write the same state any number of times
    (the balance only moves forward in sequence, a movement is keyed by its event)."""

    name = "escrow_balances"

    async def write_values(
        self, conn: asyncpg.Connection, items: list[tuple[str, Any]], batch: Buffered
    ) -> None:
        balances = [b for _, state in items for b in state.get("bookings", {}).values()]
        if not balances:
            return
        await conn.executemany(_UPSERT_BALANCE, [balance_row(b) for b in balances])
        # Only the movements of this batch's events (applied or redelivered): the earlier ones
        # were written before their own batches were acked.
        wanted = {event_id for key, _ in items for event_id in batch.events.get(key, ())}
        movements = [row for b in balances for row in movement_rows(b, wanted)]
        if movements:
            await conn.executemany(_INSERT_MOVEMENT, movements)
