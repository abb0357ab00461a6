"""Gigs as event histories, the way the write side commits them: a booking, its funding, and how
its money left escrow (release, refund, dispute split), plus reviews. For fold tests without the
API, and for streams of thousands of events in the crash tests."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from api.money import platform_fee
from streams.bookings import BookingCreated
from streams.disputes import DisputeOpened, DisputeResolved
from streams.escrow import EscrowFunded, EscrowRefunded, EscrowReleased
from streams.events import Event, EventData, new_event
from streams.reviews import ReviewCreated

Ending = Literal["unfunded", "held", "released", "refunded", "split", "disputed"]
ENDINGS: tuple[Ending, ...] = ("unfunded", "held", "released", "refunded", "split", "disputed")


@dataclass
class SyntheticGig:
    client_id: uuid.UUID = field(default_factory=uuid.uuid4)
    worker_id: uuid.UUID = field(default_factory=uuid.uuid4)
    project_id: uuid.UUID = field(default_factory=uuid.uuid4)
    booking_id: uuid.UUID = field(default_factory=uuid.uuid4)
    escrow_id: uuid.UUID = field(default_factory=uuid.uuid4)
    payment_id: uuid.UUID = field(default_factory=uuid.uuid4)
    amount_cents: int = 1005
    currency: str = "USD"

    def event(self, record: EventData) -> Event:
        return new_event(record, aggregate_id=self.project_id, actor_id=self.client_id)

    def booked(self) -> Event:
        split = platform_fee(self.amount_cents)
        return self.event(
            BookingCreated(
                booking_id=self.booking_id,
                project_id=self.project_id,
                bid_id=uuid.uuid4(),
                client_id=self.client_id,
                worker_id=self.worker_id,
                escrow_hold_id=self.escrow_id,
                agreed_amount_cents=self.amount_cents,
                fee_cents=split.fee_cents,
                net_cents=split.net_cents,
                currency=self.currency,
            )
        )

    def funded(self) -> Event:
        split = platform_fee(self.amount_cents)
        return self.event(
            EscrowFunded(
                escrow_id=self.escrow_id,
                booking_id=self.booking_id,
                project_id=self.project_id,
                client_id=self.client_id,
                worker_id=self.worker_id,
                payment_id=self.payment_id,
                amount_cents=self.amount_cents,
                fee_cents=split.fee_cents,
                net_cents=split.net_cents,
                currency=self.currency,
            )
        )

    def released(
        self, amount_cents: int | None = None, *, dispute_id: uuid.UUID | None = None
    ) -> Event:
        amount = self.amount_cents if amount_cents is None else amount_cents
        split = platform_fee(amount)
        return self.event(
            EscrowReleased(
                escrow_id=self.escrow_id,
                booking_id=self.booking_id,
                project_id=self.project_id,
                worker_id=self.worker_id,
                payout_id=uuid.uuid4(),
                amount_cents=amount,
                fee_cents=split.fee_cents,
                net_cents=split.net_cents,
                currency=self.currency,
                dispute_id=dispute_id,
            )
        )

    def refunded(
        self, amount_cents: int | None = None, *, dispute_id: uuid.UUID | None = None
    ) -> Event:
        return self.event(
            EscrowRefunded(
                escrow_id=self.escrow_id,
                booking_id=self.booking_id,
                project_id=self.project_id,
                client_id=self.client_id,
                refund_id=uuid.uuid4(),
                amount_cents=self.amount_cents if amount_cents is None else amount_cents,
                currency=self.currency,
                reason="dispute" if dispute_id else "cancellation",
                dispute_id=dispute_id,
            )
        )

    def dispute_opened(self, dispute_id: uuid.UUID) -> Event:
        return self.event(
            DisputeOpened(
                dispute_id=dispute_id,
                project_id=self.project_id,
                escrow_id=self.escrow_id,
                client_id=self.client_id,
                worker_id=self.worker_id,
                opened_by=self.client_id,
                reason="The work was not delivered as agreed.",
                evidence_count=0,
                previous_project_status="delivered",
                amount_cents=self.amount_cents,
                currency=self.currency,
            )
        )

    def dispute_resolved(
        self, dispute_id: uuid.UUID, resolution: Literal["release", "refund", "split"], worker: int
    ) -> Event:
        return self.event(
            DisputeResolved(
                dispute_id=dispute_id,
                project_id=self.project_id,
                escrow_id=self.escrow_id,
                client_id=self.client_id,
                worker_id=self.worker_id,
                resolution=resolution,
                worker_amount_cents=worker,
                client_amount_cents=self.amount_cents - worker,
                fee_cents=platform_fee(worker).fee_cents if worker else 0,
                currency=self.currency,
                resolved_by=uuid.uuid4(),
                project_status="completed" if worker else "cancelled",
            )
        )

    def history(self, ending: Ending) -> list[Event]:
        """The gig's money events, in the order the write side commits them."""
        events = [self.booked()]
        if ending == "unfunded":
            return events
        events.append(self.funded())
        if ending == "released":
            events.append(self.released())
        elif ending == "refunded":
            events.append(self.refunded())
        elif ending in ("split", "disputed"):
            dispute = uuid.uuid4()
            events.append(self.dispute_opened(dispute))
            if ending == "split":
                worker = self.amount_cents * 2 // 3
                events += [
                    self.released(worker, dispute_id=dispute),
                    self.refunded(self.amount_cents - worker, dispute_id=dispute),
                    self.dispute_resolved(dispute, "split", worker),
                ]
        return events


def review(*, reviewee_id: uuid.UUID, rating: int, role: str = "worker") -> Event:
    reviewer = uuid.uuid4()
    return new_event(
        ReviewCreated(
            review_id=uuid.uuid4(),
            project_id=uuid.uuid4(),
            reviewer_id=reviewer,
            reviewee_id=reviewee_id,
            reviewee_role=role,  # type: ignore[arg-type]
            rating=rating,
        ),
        aggregate_id=reviewee_id,
        actor_id=reviewer,
    )


def numbered(events: Iterable[Event]) -> list[Event]:
    """`events` with the per-aggregate sequence the outbox would give them."""
    seen: dict[str, int] = {}
    out = []
    for event in events:
        seen[event.aggregate_id] = seen.get(event.aggregate_id, 0) + 1
        out.append(event.model_copy(update={"sequence": seen[event.aggregate_id]}))
    return out


def random_mix(rng: random.Random, *, gigs: int, workers: int = 50) -> list[Event]:
    """`gigs` gigs with random amounts and endings among a pool of workers and clients, their
    events interleaved (each gig's in order), and a review for each released gig."""
    worker_ids = [uuid.uuid4() for _ in range(workers)]
    client_ids = [uuid.uuid4() for _ in range(max(1, workers // 2))]
    histories: list[list[Event]] = []
    for _ in range(gigs):
        gig = SyntheticGig(
            client_id=rng.choice(client_ids),
            worker_id=rng.choice(worker_ids),
            amount_cents=rng.randint(500, 250_000),
            currency=rng.choice(("USD", "USD", "EUR")),
        )
        ending = rng.choice(ENDINGS)
        history = gig.history(ending)
        if ending == "released":
            history.append(review(reviewee_id=gig.worker_id, rating=rng.randint(1, 5)))
        histories.append(history)
    # Interleave: repeatedly take the next event of a random unfinished gig.
    out: list[Event] = []
    cursors = [0] * len(histories)
    open_ = list(range(len(histories)))
    while open_:
        index = rng.randrange(len(open_))
        gig_index = open_[index]
        out.append(histories[gig_index][cursors[gig_index]])
        cursors[gig_index] += 1
        if cursors[gig_index] == len(histories[gig_index]):
            open_[index] = open_[-1]
            open_.pop()
    return out
