"""Ratings: the fold from `review.created` to each rated user's running rating, and its read model.

Keyed by the rated user (the `reviews` stream's key), one value per user:

    {"seq": 3, "role": "worker", "count": 3, "sum": 13, "stars": [0, 0, 1, 0, 2], ...}

Adding reviews is order-free, but a redelivery must not count twice: `seq` (the user's review
sequence last applied, agents/folding.py) makes it a no-op.

The ranking score is a Bayesian average: the mean of the user's stars and PRIOR_WEIGHT imaginary
reviews of PRIOR_MEAN stars. A newcomer ranks at the prior, one 5-star review moves them a little,
and a long record of 4.8 beats a single 5.0 — which a plain average gets backwards.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final

import asyncpg

from streams.events import Event, PoisonEvent, new_event
from streams.ratings import RatingUpdated
from tables.sink import Buffered, PostgresSink

TYPES: Final = frozenset({"review.created"})

# Five reviews' worth of pull towards 3.5 stars: the middle of what a marketplace's ratings spread
# over (most land between 3 and 5). Both are ranking policy, not facts; change them together.
PRIOR_WEIGHT: Final = 5
PRIOR_MEAN: Final = Decimal("3.5")
_FOUR_PLACES: Final = Decimal("0.0001")

State = dict[str, Any]


def apply(state: State | None, event: Event) -> State:
    """`state` after one more review."""
    data = event.data
    rating = data.get("rating")
    if not isinstance(rating, int) or isinstance(rating, bool) or not 1 <= rating <= 5:
        raise PoisonEvent(f"review.created rating must be 1-5, not {rating!r}")
    role = data.get("reviewee_role")
    if role not in ("worker", "client"):
        raise PoisonEvent(f"review.created reviewee_role must be worker or client, not {role!r}")
    if state is None or "count" not in state:
        state = {"seq": 0, **(state or {}), "count": 0, "sum": 0, "stars": [0, 0, 0, 0, 0]}
    stars = list(state["stars"])
    stars[rating - 1] += 1
    return {
        **state,
        "role": role,
        "count": state["count"] + 1,
        "sum": state["sum"] + rating,
        "stars": stars,
        "last_review_id": data.get("review_id"),
        "updated_at": event.occurred_at.isoformat(),
    }


def average(state: State) -> Decimal | None:
    if not state["count"]:
        return None
    mean = Decimal(state["sum"]) / int(state["count"])
    return mean.quantize(_FOUR_PLACES, ROUND_HALF_UP)


def bayesian(state: State) -> Decimal:
    score = (PRIOR_WEIGHT * PRIOR_MEAN + int(state["sum"])) / (PRIOR_WEIGHT + int(state["count"]))
    return score.quantize(_FOUR_PLACES, ROUND_HALF_UP)


def rating_updated(key: str, state: State) -> Event:
    """The derived event for `state`; the same state always gives the same event (and event id),
    so a batch replayed after a crash republishes a duplicate that consumers recognise."""
    mean = average(state)
    record = RatingUpdated(
        user_id=uuid.UUID(key),
        role=state["role"],
        review_id=state["last_review_id"],
        count=state["count"],
        sum=state["sum"],
        distribution=state["stars"],
        average=float(mean) if mean is not None else None,
        bayesian=float(bayesian(state)),
    )
    event = new_event(record, aggregate_id=key)
    return event.model_copy(
        update={
            "event_id": uuid.uuid5(
                uuid.NAMESPACE_URL, f"tulifo:rating.updated:{key}:{state['seq']}"
            ),
            "occurred_at": datetime.fromisoformat(state["updated_at"]),
            "sequence": state["seq"],
        }
    )


_UPSERT = """
INSERT INTO analytics.user_ratings AS r (
    user_id, role, count, sum, stars_1, stars_2, stars_3, stars_4, stars_5, average, bayesian,
    last_sequence, updated_at, materialized_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, now())
ON CONFLICT (user_id) DO UPDATE SET
    role = EXCLUDED.role, count = EXCLUDED.count, sum = EXCLUDED.sum,
    stars_1 = EXCLUDED.stars_1, stars_2 = EXCLUDED.stars_2, stars_3 = EXCLUDED.stars_3,
    stars_4 = EXCLUDED.stars_4, stars_5 = EXCLUDED.stars_5, average = EXCLUDED.average,
    bayesian = EXCLUDED.bayesian, last_sequence = EXCLUDED.last_sequence,
    updated_at = EXCLUDED.updated_at, materialized_at = now()
 WHERE r.last_sequence < EXCLUDED.last_sequence"""


class RatingsSink(PostgresSink):
    name = "user_ratings"

    async def write_values(
        self, conn: asyncpg.Connection, items: list[tuple[str, Any]], batch: Buffered
    ) -> None:
        await conn.executemany(_UPSERT, [self.row(key, state) for key, state in items])

    @staticmethod
    def row(key: str, state: State) -> tuple[Any, ...]:
        return (
            key,  # asyncpg parses the uuid string itself
            state["role"],
            state["count"],
            state["sum"],
            *state["stars"],
            average(state),
            bayesian(state),
            state["seq"],
            datetime.fromisoformat(state["updated_at"]),
        )
