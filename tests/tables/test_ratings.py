"""The ratings fold as a pure function, and the `rating.updated` it announces."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest

from streams.events import PoisonEvent
from tables import ratings
from tests.streams.gig_factories import numbered, review


def rated(*stars: int, role: str = "worker") -> tuple[str, dict[str, Any]]:
    user = uuid.uuid4()
    state: dict[str, Any] | None = None
    for event in numbered(review(reviewee_id=user, rating=s, role=role) for s in stars):
        state = {**ratings.apply(state, event), "seq": event.sequence}
    assert state is not None
    return str(user), state


def test_count_sum_and_distribution() -> None:
    _, state = rated(5, 4, 5, 1)
    assert (state["count"], state["sum"], state["stars"]) == (4, 15, [1, 0, 0, 1, 2])
    assert ratings.average(state) == Decimal("3.7500")


def test_the_bayesian_average_ranks_a_long_record_above_a_single_review() -> None:
    _, one_five = rated(5)
    _, many = rated(*([5] * 9 + [4]))
    # (5 x 3.5 + 5) / 6 = 3.75; (5 x 3.5 + 49) / 15 = 4.4333
    assert ratings.bayesian(one_five) == Decimal("3.7500")
    assert ratings.bayesian(many) == Decimal("4.4333")
    assert ratings.average(one_five) > ratings.average(many)  # type: ignore[operator]
    assert ratings.bayesian(many) > ratings.bayesian(one_five)


def test_clients_are_rated_apart_from_workers() -> None:
    _, state = rated(2, role="client")
    assert state["role"] == "client"


@pytest.mark.parametrize("bad", [0, 6, 4.5, "5", True])
def test_a_rating_outside_one_to_five_is_poison(bad: object) -> None:
    event = review(reviewee_id=uuid.uuid4(), rating=3)
    event = event.model_copy(update={"data": {**event.data, "rating": bad}})
    with pytest.raises(PoisonEvent, match="rating must be 1-5"):
        ratings.apply(None, event)


def test_the_announcement_is_the_same_event_for_the_same_state() -> None:
    user, state = rated(4, 5)
    first, again = ratings.rating_updated(user, state), ratings.rating_updated(user, state)
    assert first == again
    assert first.type == "rating.updated"
    assert first.aggregate_id == user
    assert first.sequence == 2
    assert first.data["distribution"] == [0, 0, 0, 1, 1]
    assert first.data["average"] == 4.5
    assert first.data["bayesian"] == pytest.approx(3.7857, abs=1e-4)
