"""Records of the matching domain, derived by the matching agent (agents/matching.py).

Keyed by the project: `match.scored` says a project's ranking of workers changed and how.
"""

from __future__ import annotations

import uuid
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from streams.events import EventData


class RankedWorker(BaseModel):
    """One worker's place in a ranking; `rank` and the scores are None when they left it."""

    model_config = ConfigDict(frozen=True)

    worker_id: uuid.UUID
    rank: int | None
    score: float | None
    text: float | None = None
    rating: float | None = None
    availability: float | None = None


class MatchScored(EventData):
    event_type: ClassVar[str] = "match.scored"

    project_id: uuid.UUID
    client_id: uuid.UUID
    # The workers whose rank or score changed, who entered or who left the ranking.
    changes: list[RankedWorker]
    # How many workers the ranking holds now, and its best ones (up to 10).
    ranked: int
    top: list[RankedWorker]
