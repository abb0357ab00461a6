"""MongoDB `client_data`: each client's projects with their billing, written from the escrow
fold's values on a real MongoDB-protocol server; a value never overwrites a newer one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from infrastructure.mongo import MongoDatabase
from streams.events import Event, new_event
from streams.projects import ProjectCreated
from tables import escrow
from tables.client_data import CLIENT_DATA, ClientDataSink
from tests.streams.gig_factories import SyntheticGig, numbered


def folded(events: list[Event]) -> dict[str, Any]:
    state: dict[str, Any] | None = None
    for event in numbered(events):
        state = {**escrow.apply(state, event), "seq": event.sequence}
    assert state is not None
    return state


def created(gig: SyntheticGig) -> Event:
    return new_event(
        ProjectCreated(
            project_id=gig.project_id,
            client_id=gig.client_id,
            title="Build a payment flow",
            description="Escrow, Stripe, webhooks.",
            budget_cents=gig.amount_cents,
            currency=gig.currency,
            required_skills=["python"],
            deadline=None,
            status="open",
        ),
        aggregate_id=gig.project_id,
    )


async def write(db: MongoDatabase, key: str, state: dict[str, Any]) -> None:
    sink = ClientDataSink(db)
    sink.add(partition=0, key=key, value=state, occurred_at=datetime.now(UTC), event_id="e")
    assert await sink.flush() == {}


async def test_a_clients_document_holds_each_project_and_where_its_money_is(
    mongo_db: MongoDatabase,
) -> None:
    gig = SyntheticGig(amount_cents=1005)
    state = folded([created(gig), *gig.history("released")])
    await write(mongo_db, str(gig.project_id), state)

    document = await mongo_db[CLIENT_DATA].find_one({"_id": str(gig.client_id)})
    assert document is not None
    entry = document["projects"][str(gig.project_id)]
    assert (entry["title"], entry["status"], entry["budgetCents"]) == (
        "Build a payment flow",
        "open",
        1005,
    )
    billing = entry["billing"]
    assert (billing["paidCents"], billing["releasedCents"], billing["feesCents"]) == (
        1005,
        1005,
        101,
    )
    assert billing["inEscrowCents"] == 0
    assert [b["status"] for b in billing["bookings"]] == ["released"]


async def test_an_older_value_never_replaces_a_newer_one(mongo_db: MongoDatabase) -> None:
    gig = SyntheticGig(amount_cents=2000)
    history = [created(gig), *gig.history("released")]
    newer, older = folded(history), folded(history[:-1])
    await write(mongo_db, str(gig.project_id), newer)
    await write(mongo_db, str(gig.project_id), older)  # a late redelivery
    await write(mongo_db, str(gig.project_id), newer)  # and the same value again

    document = await mongo_db[CLIENT_DATA].find_one({"_id": str(gig.client_id)})
    assert document is not None
    entry = document["projects"][str(gig.project_id)]
    assert entry["lastSequence"] == newer["seq"]
    assert entry["billing"]["releasedCents"] == 2000
    assert await mongo_db[CLIENT_DATA].count_documents({}) == 1
