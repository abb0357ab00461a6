"""Ratings: every rated user's running rating, folded from `review.created` (tables/ratings.py)
into the `user_ratings` table, materialized to `analytics.user_ratings`, and announced as
`rating.updated` on the `ratings` stream for matching and live dashboards."""

from __future__ import annotations

from collections.abc import Sequence

import faust

from agents.folding import Fold, State, register_fold
from agents.runtime import AgentDeps
from streams.events import Event
from tables import ratings


def _announce(key: str, state: State) -> Sequence[Event]:
    return [ratings.rating_updated(key, state)]


FOLD = Fold(
    name="user_ratings",
    stream="reviews",
    types=ratings.TYPES,
    apply=ratings.apply,
    sinks=(lambda deps: ratings.RatingsSink(deps.settings.database_url),),
    derive=_announce,
)


def register(app: faust.App, deps: AgentDeps) -> None:
    register_fold(app, deps, FOLD)
