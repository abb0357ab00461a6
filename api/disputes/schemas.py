"""Bodies of /api/disputes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, HttpUrl, StringConstraints

from api.money import MAX_AMOUNT_CENTS
from api.schemas import ApiModel, ResponseModel

MAX_EVIDENCE_ITEMS = 20
Resolution = Literal["release", "refund", "split"]
DisputeStatus = Literal["open", "resolved"]
# Stored parts of a split are capped like every amount (api/money.py): an absurd number is a
# 422 at the door, before it is compared with what the hold contains.
PartCents = Annotated[int, Field(strict=True, ge=0, le=MAX_AMOUNT_CENTS)]


class EvidenceItem(ApiModel):
    description: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)
    ]
    url: HttpUrl | None = None


def _seed_evidence(value: Any) -> Any:
    # The seed's `evidence` is text: one string, or a list of strings. Each becomes an item
    # with that description, so a seed client's dispute keeps what it said.
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        return [{"description": item} if isinstance(item, str) else item for item in value]
    return value


class OpenDisputeRequest(ApiModel):
    # Optional as in the seed's `{reason, evidence}`: left out, it is the caller's one project
    # with money held that may be disputed (api/projects/implied.py).
    project_id: uuid.UUID | None = None
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=10, max_length=5000)]
    evidence: Annotated[
        list[EvidenceItem],
        Field(
            max_length=MAX_EVIDENCE_ITEMS,
            description="Items {description, url}; the seed's strings are accepted as items.",
        ),
        BeforeValidator(_seed_evidence),
    ] = Field(default_factory=list)


class ResolveDisputeRequest(ApiModel):
    """release: the worker gets the hold's net, the platform its fee. refund: the client gets
    the whole amount back, no fee. split: workerAmountCents + clientAmountCents must equal the
    amount held; the client part is refunded whole and the platform fee is taken on the worker
    part only (10% of it, rounded half up)."""

    resolution: Resolution
    worker_amount_cents: PartCents | None = None
    client_amount_cents: PartCents | None = None
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=5000)] | None = None


class DisputeOut(ResponseModel):
    id: uuid.UUID
    project_id: uuid.UUID
    escrow_id: uuid.UUID
    client_id: uuid.UUID
    worker_id: uuid.UUID
    opened_by: uuid.UUID
    reason: str
    evidence: list[EvidenceItem]
    status: DisputeStatus
    previous_project_status: str
    escrow_status: str
    amount_cents: int
    currency: str
    resolution: Resolution | None
    worker_amount_cents: int | None
    client_amount_cents: int | None
    fee_cents: int | None
    resolution_note: str | None
    resolved_by: uuid.UUID | None
    resolved_at: datetime | None
    created_at: datetime
    updated_at: datetime


class OpenerOut(ResponseModel):
    id: uuid.UUID
    name: str


class DisputeItem(ResponseModel):
    """A dispute as an admin's queue lists it; GET /api/disputes/{id} has its evidence."""

    id: uuid.UUID
    project_id: uuid.UUID
    project_title: str
    escrow_id: uuid.UUID
    escrow_status: str
    amount_cents: int
    currency: str
    opened_by: OpenerOut
    reason: str
    status: DisputeStatus
    resolution: Resolution | None
    worker_amount_cents: int | None
    client_amount_cents: int | None
    fee_cents: int | None
    resolved_by: uuid.UUID | None
    resolved_at: datetime | None
    created_at: datetime


class DisputePage(ResponseModel):
    items: list[DisputeItem]
    # Pass as `cursor` for the next page; null on the last one.
    next_cursor: str | None
