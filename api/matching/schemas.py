"""Shapes of GET /api/matching/match."""

from __future__ import annotations

import uuid
from datetime import datetime

from api.schemas import ResponseModel


class ScoreParts(ResponseModel):
    """Each part of a score, in [0, 1], before its weight: score = sum of weight * part."""

    text: float
    rating: float
    availability: float


class MatchedWorker(ResponseModel):
    id: uuid.UUID
    name: str
    headline: str
    skills: list[str]
    availability: str
    # The Bayesian average the ranking used (None before a first review: ranked as neutral).
    rating: float | None
    rating_count: int


class Match(ResponseModel):
    rank: int
    score: float
    parts: ScoreParts
    worker: MatchedWorker


class MatchPage(ResponseModel):
    project_id: uuid.UUID
    project_status: str
    # What the matcher blends (tables/matching.py; README "Matching").
    weights: ScoreParts
    # Workers in the ranking in all (0 until the matcher has ranked the project).
    ranked: int
    computed_at: datetime | None
    items: list[Match]
    next_cursor: str | None
