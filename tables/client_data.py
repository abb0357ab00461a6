"""`client_data` in MongoDB (the seed's collection: client billing and project metadata), written
from the escrow fold's gig values (tables/escrow.py).

One document per client, one entry per project under `projects.<project id>`:

    {"_id": "<client id>", "clientId": ..., "updatedAt": ...,
     "projects": {"<project id>": {"title", "status", "budgetCents", "currency", "workerId",
                                   "billing": {"paidCents", "inEscrowCents", "releasedCents",
                                               "refundedCents", "feesCents", "bookings": [...]},
                                   "lastSequence", "updatedAt"}}}

A project's entry is replaced whole, and only by a value of a higher sequence than the one it
holds, so a redelivery or a replay never moves it backwards. Cents stay integers.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pymongo import UpdateOne
from pymongo.errors import ConnectionFailure, ExecutionTimeout, PyMongoError, WTimeoutError

from infrastructure.mongo import MongoDatabase
from tables.sink import Buffered, Sink, SinkUnavailable

CLIENT_DATA = "client_data"

_UNAVAILABLE = (ConnectionFailure, ExecutionTimeout, WTimeoutError, OSError, TimeoutError)


def project_entry(project_id: str, state: Mapping[str, Any]) -> dict[str, Any] | None:
    """The client_data entry of one gig, or None while the gig has no client (no project event
    and no booking seen yet)."""
    project = state.get("project") or {}
    bookings = list((state.get("bookings") or {}).values())
    client_id = project.get("client_id") or next((b["client_id"] for b in bookings), None)
    if client_id is None:
        return None
    return {
        "clientId": client_id,
        "projectId": project_id,
        "title": project.get("title"),
        "status": project.get("status"),
        "budgetCents": project.get("budget_cents"),
        "currency": project.get("currency") or next((b["currency"] for b in bookings), None),
        "workerId": project.get("worker_id") or next((b["worker_id"] for b in bookings), None),
        "billing": {
            "paidCents": sum(b["funded_cents"] for b in bookings),
            "inEscrowCents": sum(b["held_cents"] for b in bookings),
            "releasedCents": sum(b["released_cents"] for b in bookings),
            "refundedCents": sum(b["refunded_cents"] for b in bookings),
            "feesCents": sum(b["fee_cents"] for b in bookings),
            "bookings": [
                {
                    "bookingId": b["booking_id"],
                    "escrowId": b["escrow_id"],
                    "status": b["status"],
                    "agreedCents": b["agreed_cents"],
                    "heldCents": b["held_cents"],
                    "releasedCents": b["released_cents"],
                    "refundedCents": b["refunded_cents"],
                    "feeCents": b["fee_cents"],
                }
                for b in bookings
            ],
        },
        "lastSequence": int(state["seq"]),
        "updatedAt": project.get("updated_at")
        or max((b["updated_at"] for b in bookings if b["updated_at"]), default=None),
    }


def operations(items: list[tuple[str, Any]], *, now: datetime) -> list[UpdateOne]:
    """Two writes per project: make sure the client's document exists, then replace the
    project's entry if ours is newer (the filter fails, and nothing changes, otherwise)."""
    ops: list[UpdateOne] = []
    for project_id, state in items:
        entry = project_entry(project_id, state)
        if entry is None:
            continue
        client, path = entry["clientId"], f"projects.{project_id}"
        ops.append(
            UpdateOne(
                {"_id": client},
                {"$setOnInsert": {"clientId": client, "projects": {}}},
                upsert=True,
            )
        )
        ops.append(
            UpdateOne(
                {
                    "_id": client,
                    "$or": [
                        {f"{path}.lastSequence": {"$lt": entry["lastSequence"]}},
                        {path: {"$exists": False}},
                    ],
                },
                {"$set": {path: entry, "updatedAt": now}},
            )
        )
    return ops


class ClientDataSink(Sink):
    name = "client_data"

    def __init__(self, db: MongoDatabase) -> None:
        super().__init__()
        self.db = db

    async def write(self, batch: Buffered) -> dict[str, str]:
        values = batch.values
        ops = operations(list(values.items()), now=datetime.now(UTC))
        if not ops:
            return {}
        try:
            await self.db[CLIENT_DATA].bulk_write(ops, ordered=True)
        except _UNAVAILABLE as exc:
            raise SinkUnavailable(f"{type(exc).__name__}: {exc}") from exc
        except PyMongoError as exc:
            # A document MongoDB refuses is a bug in the mapping above; say which projects.
            return {key: f"client_data: {type(exc).__name__}: {exc}" for key in values}
        return {}
