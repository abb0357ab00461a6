"""Records of the reviews domain.

Keyed by the reviewee: the ratings agent folds reviews into one running rating per reviewee,
and keying by it keeps that table's updates on one partition with no repartition step.
"""

from __future__ import annotations

import uuid
from typing import ClassVar, Literal

from streams.events import EventData


class ReviewCreated(EventData):
    event_type: ClassVar[str] = "review.created"

    review_id: uuid.UUID
    project_id: uuid.UUID
    reviewer_id: uuid.UUID
    reviewee_id: uuid.UUID
    # Workers' ratings show on their profiles (analytics.worker_ratings); clients' are
    # kept apart, so the ratings agent must know which side was rated.
    reviewee_role: Literal["worker", "client"]
    rating: int
