"""The escrow fold as a pure function: where a gig's money is after each of its events."""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest

from streams.events import Event, PoisonEvent
from tables import escrow
from tests.streams.gig_factories import ENDINGS, SyntheticGig, numbered, random_mix


def fold(events: list[Event]) -> dict[str, Any]:
    states: dict[str, Any] = {}
    for event in events:
        if event.type in escrow.TYPES:
            state = escrow.apply(states.get(event.aggregate_id), event)
            states[event.aggregate_id] = {**state, "seq": event.sequence}
    return states


def balance_of(gig: SyntheticGig, events: list[Event]) -> dict[str, Any]:
    state = fold(numbered(events))[str(gig.project_id)]
    balance: dict[str, Any] = state["bookings"][str(gig.booking_id)]
    return balance


def money(balance: dict[str, Any]) -> tuple[str, int, int, int, int, int, int]:
    return (
        balance["status"],
        balance["funded_cents"],
        balance["held_cents"],
        balance["released_cents"],
        balance["worker_net_cents"],
        balance["fee_cents"],
        balance["refunded_cents"],
    )


def test_a_released_gig_paid_the_worker_net_and_the_platform_its_fee() -> None:
    gig = SyntheticGig(amount_cents=1005)
    # 10% of 1005 is 100.5: the fee rounds half up to 101, so the worker nets 904.
    assert money(balance_of(gig, gig.history("released"))) == (
        "released",
        1005,
        0,
        1005,
        904,
        101,
        0,
    )


def test_a_booked_gig_holds_nothing_until_it_is_funded() -> None:
    gig = SyntheticGig(amount_cents=1005)
    assert money(balance_of(gig, gig.history("unfunded"))) == ("unfunded", 0, 0, 0, 0, 0, 0)
    assert money(balance_of(gig, gig.history("held"))) == ("funded", 1005, 1005, 0, 0, 0, 0)


def test_a_cancelled_gig_gives_the_client_everything_back_and_takes_no_fee() -> None:
    gig = SyntheticGig(amount_cents=1005)
    assert money(balance_of(gig, gig.history("refunded"))) == ("refunded", 1005, 0, 0, 0, 0, 1005)


def test_a_dispute_freezes_the_hold_and_a_split_ends_it() -> None:
    gig = SyntheticGig(amount_cents=1005)
    assert balance_of(gig, gig.history("disputed"))["status"] == "frozen"
    # The worker is given 670 of 1005: fee 67, net 603; the client gets 335 back.
    assert money(balance_of(gig, gig.history("split"))) == ("split", 1005, 0, 670, 603, 67, 335)


def test_every_movement_is_recorded_once_with_its_event() -> None:
    gig = SyntheticGig()
    events = gig.history("split")
    movements = balance_of(gig, events)["movements"]
    assert [m["kind"] for m in movements] == ["funded", "disputed", "released", "refunded"]
    assert len({m["event_id"] for m in movements}) == 4


def test_a_release_of_more_than_is_held_is_poison_and_changes_nothing() -> None:
    gig = SyntheticGig(amount_cents=1000)
    state = fold(numbered(gig.history("held")))[str(gig.project_id)]
    with pytest.raises(PoisonEvent, match="only 1000 are held"):
        escrow.apply(state, gig.released(1001))
    assert state["bookings"][str(gig.booking_id)]["held_cents"] == 1000


def test_money_for_a_hold_never_funded_is_poison() -> None:
    gig = SyntheticGig()
    with pytest.raises(PoisonEvent, match="never funded"):
        escrow.apply(None, gig.released())


def test_a_float_amount_is_poison() -> None:
    gig = SyntheticGig()
    event = gig.funded()
    event = event.model_copy(update={"data": {**event.data, "amount_cents": 10.05}})
    with pytest.raises(PoisonEvent, match="amount_cents must be a non-negative integer"):
        escrow.apply(None, event)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_in_any_mix_of_gigs_every_cent_is_held_released_or_refunded(seed: int) -> None:
    rng = random.Random(seed)
    events = numbered(random_mix(rng, gigs=200))
    funded = sum(e.data["amount_cents"] for e in events if e.type == "escrow.funded")
    balances = [b for s in fold(events).values() for b in s["bookings"].values()]
    assert {b["status"] for b in balances} <= {
        "unfunded",
        "funded",
        "frozen",
        "released",
        "refunded",
        "split",
    }
    for b in balances:
        assert b["funded_cents"] == b["held_cents"] + b["released_cents"] + b["refunded_cents"]
        assert b["released_cents"] == b["worker_net_cents"] + b["fee_cents"]
    assert sum(b["funded_cents"] for b in balances) == funded
    assert len(ENDINGS) == 6


def test_the_fold_does_not_change_the_state_it_was_given() -> None:
    gig = SyntheticGig()
    state = fold(numbered(gig.history("held")))[str(gig.project_id)]
    before = repr(state)
    escrow.apply(state, gig.released())
    assert repr(state) == before
    assert uuid.UUID(state["bookings"][str(gig.booking_id)]["escrow_id"]) == gig.escrow_id
