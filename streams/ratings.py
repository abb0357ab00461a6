"""Records of the ratings domain, derived by the ratings agent from `review.created`.

Keyed by the rated user; `sequence` is the rated user's review sequence the rating includes, so a
consumer keeps the newest and skips a redelivery the same way folds do.
"""

from __future__ import annotations

import uuid
from typing import ClassVar, Literal

from streams.events import EventData


class RatingUpdated(EventData):
    event_type: ClassVar[str] = "rating.updated"

    user_id: uuid.UUID
    role: Literal["worker", "client"]
    review_id: uuid.UUID
    count: int
    sum: int
    # How many reviews gave 1, 2, 3, 4 and 5 stars.
    distribution: list[int]
    average: float | None
    # The ranking score (tables/ratings.py): the average, pulled towards a prior while reviews
    # are few.
    bayesian: float
