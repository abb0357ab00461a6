"""Every SQL statement of the payments domain: payments and the Stripe event ledger."""

from __future__ import annotations

import uuid

import asyncpg


async def fetch_booking(
    conn: asyncpg.Connection, *, booking_id: uuid.UUID
) -> asyncpg.Record | None:
    """A booking with its escrow hold's id (the hold is made with the booking)."""
    record: asyncpg.Record | None = await conn.fetchrow(
        """SELECT b.id, b.project_id, b.client_id, b.worker_id, b.agreed_amount_cents,
                  b.currency, e.id AS escrow_id
             FROM bookings b
             LEFT JOIN escrow_holds e ON e.booking_id = b.id
            WHERE b.id = $1""",
        booking_id,
    )
    return record


# A booking's payment that counts, among the failed ones a retry after a declined card leaves:
# the one not failed (at most one, migration 0007), else the latest failure.
_CURRENT_FIRST = "ORDER BY (status <> 'failed') DESC, created_at DESC, id DESC LIMIT 1"


async def fetch_payment_of_booking(
    conn: asyncpg.Connection, *, booking_id: uuid.UUID
) -> asyncpg.Record | None:
    """The booking's current payment: its live one, else its latest failed one."""
    record: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT * FROM payments WHERE booking_id = $1 {_CURRENT_FIRST}", booking_id
    )
    return record


async def fetch_payment_by_intent(
    conn: asyncpg.Connection, *, intent_id: str
) -> asyncpg.Record | None:
    record: asyncpg.Record | None = await conn.fetchrow(
        "SELECT * FROM payments WHERE stripe_payment_intent_id = $1", intent_id
    )
    return record


async def lock_payment(conn: asyncpg.Connection, *, payment_id: uuid.UUID) -> asyncpg.Record:
    record: asyncpg.Record = await conn.fetchrow(
        "SELECT * FROM payments WHERE id = $1 FOR UPDATE", payment_id
    )
    return record


async def lock_payment_of_escrow(
    conn: asyncpg.Connection, *, escrow_id: uuid.UUID
) -> asyncpg.Record | None:
    """The hold's current payment (see fetch_payment_of_booking), locked."""
    record: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT * FROM payments WHERE escrow_id = $1 {_CURRENT_FIRST} FOR UPDATE", escrow_id
    )
    return record


async def insert_payment(
    conn: asyncpg.Connection,
    *,
    payment_id: uuid.UUID,
    booking_id: uuid.UUID,
    escrow_id: uuid.UUID,
    project_id: uuid.UUID,
    client_id: uuid.UUID,
    intent_id: str,
    amount_cents: int,
    fee_cents: int,
    net_cents: int,
    currency: str,
) -> bool:
    """Record the booking's payment; False if the booking already has one that has not failed
    (nothing changes)."""
    inserted = await conn.fetchval(
        """INSERT INTO payments (id, booking_id, escrow_id, project_id, client_id,
                                 stripe_payment_intent_id, amount_cents, fee_cents, net_cents,
                                 currency)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
           ON CONFLICT DO NOTHING
           RETURNING true""",
        payment_id,
        booking_id,
        escrow_id,
        project_id,
        client_id,
        intent_id,
        amount_cents,
        fee_cents,
        net_cents,
        currency,
    )
    return bool(inserted)


async def mark_succeeded(
    conn: asyncpg.Connection, *, payment_id: uuid.UUID, charge_id: str | None
) -> None:
    await conn.execute(
        """UPDATE payments
              SET status = 'succeeded', stripe_charge_id = $2, failure_code = NULL,
                  failure_message = NULL, succeeded_at = now(), updated_at = now()
            WHERE id = $1""",
        payment_id,
        charge_id,
    )


async def mark_failed(
    conn: asyncpg.Connection,
    *,
    payment_id: uuid.UUID,
    failure_code: str | None,
    failure_message: str | None,
) -> None:
    await conn.execute(
        """UPDATE payments
              SET status = 'failed', failure_code = $2, failure_message = $3, updated_at = now()
            WHERE id = $1""",
        payment_id,
        failure_code,
        failure_message,
    )


async def stop_pending_payment(
    conn: asyncpg.Connection, *, booking_id: uuid.UUID, reason: str, message: str
) -> asyncpg.Record | None:
    """Mark the booking's pending payment failed, its intent to be cancelled at Stripe once the
    caller commits; the payment, or None if none was pending."""
    record: asyncpg.Record | None = await conn.fetchrow(
        """UPDATE payments
              SET status = 'failed', failure_code = $2, failure_message = $3,
                  stripe_cancel = 'needed', updated_at = now()
            WHERE booking_id = $1 AND status = 'pending'
           RETURNING *""",
        booking_id,
        reason,
        message,
    )
    return record


async def need_intent_cancel(conn: asyncpg.Connection, *, payment_id: uuid.UUID) -> None:
    """A failed payment whose intent is replaced by a retry: cancel it at Stripe too."""
    await conn.execute(
        """UPDATE payments SET stripe_cancel = 'needed', updated_at = now()
            WHERE id = $1 AND status = 'failed'
              AND stripe_cancel IS DISTINCT FROM 'cancelled'""",
        payment_id,
    )


async def intent_cancel_outcome(
    conn: asyncpg.Connection, *, payment_id: uuid.UUID, outcome: str, error: str | None
) -> None:
    """What Stripe answered to the cancel ('cancelled', 'refused'; 'needed' when it did not)."""
    await conn.execute(
        """UPDATE payments SET stripe_cancel = $2, stripe_cancel_error = $3, updated_at = now()
            WHERE id = $1 AND stripe_cancel IS NOT NULL""",
        payment_id,
        outcome,
        error,
    )


async def intents_to_cancel(conn: asyncpg.Connection, *, limit: int) -> list[asyncpg.Record]:
    """Payments whose intent still has to be cancelled at Stripe, oldest first."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT id, stripe_payment_intent_id FROM payments
            WHERE stripe_cancel = 'needed' ORDER BY updated_at LIMIT $1""",
        limit,
    )
    return rows


async def record_anomaly(conn: asyncpg.Connection, *, payment_id: uuid.UUID, note: str) -> None:
    await conn.execute(
        "UPDATE payments SET anomaly = $2, updated_at = now() WHERE id = $1", payment_id, note
    )


async def claim_stripe_event(conn: asyncpg.Connection, *, event_id: str, event_type: str) -> bool:
    """Enter a Stripe event in the ledger; False if it is already there (a redelivery).

    A concurrent delivery of the same event waits on the primary key until this transaction
    ends, then finds the row: exactly one of them applies the effect.
    """
    inserted = await conn.fetchval(
        """INSERT INTO stripe_events (id, type) VALUES ($1, $2)
           ON CONFLICT (id) DO NOTHING RETURNING true""",
        event_id,
        event_type,
    )
    return bool(inserted)


async def settle_stripe_event(
    conn: asyncpg.Connection,
    *,
    event_id: str,
    outcome: str,
    note: str | None,
    payment_id: uuid.UUID | None,
) -> None:
    await conn.execute(
        "UPDATE stripe_events SET outcome = $2, note = $3, payment_id = $4 WHERE id = $1",
        event_id,
        outcome,
        note,
        payment_id,
    )


async def claim_intent_attempt(
    conn: asyncpg.Connection,
    *,
    booking_id: uuid.UUID,
    first_key: str,
    claim_token: uuid.UUID,
    lease_seconds: float,
) -> str | None:
    """Claim the right to create the booking's PaymentIntent; its idempotency key, or None
    while another call's claim is live.

    Called under the project and hold locks, so concurrent claimers queue on those and then
    see each other's committed claim. A claim after a 'created' attempt (its payment failed:
    a declined card) takes a new key, as does one after a refusal: Stripe would answer the old
    key with the old intent. A claim whose lease ran out (its call crashed, or hung
    past the Stripe deadline) is taken over with the same key: if that call's create reached
    Stripe, the retry gets its intent back.
    """
    key: str | None = await conn.fetchval(
        """INSERT INTO payment_intent_attempts AS a
                  (booking_id, idempotency_key, status, claim_token, lease_until)
           VALUES ($1, $2, 'creating', $3, now() + make_interval(secs => $4))
           ON CONFLICT (booking_id) DO UPDATE
              SET status = 'creating',
                  claim_token = EXCLUDED.claim_token,
                  lease_until = EXCLUDED.lease_until,
                  attempts = a.attempts + 1,
                  idempotency_key = CASE WHEN a.refused OR a.status = 'created'
                                         THEN EXCLUDED.idempotency_key || '-' || (a.attempts + 1)
                                         ELSE a.idempotency_key END,
                  refused = false,
                  stripe_payment_intent_id = NULL,
                  updated_at = now()
            WHERE a.status <> 'creating' OR a.lease_until < now()
           RETURNING idempotency_key""",
        booking_id,
        first_key,
        claim_token,
        lease_seconds,
    )
    return key


async def intent_claim_seconds_left(conn: asyncpg.Connection, *, booking_id: uuid.UUID) -> int:
    """Whole seconds until the live claim on the booking's intent runs out (at least 1)."""
    left = await conn.fetchval(
        """SELECT ceil(extract(epoch FROM lease_until - now()))::int
             FROM payment_intent_attempts WHERE booking_id = $1""",
        booking_id,
    )
    return max(1, int(left or 1))


async def intent_attempt_created(
    conn: asyncpg.Connection,
    *,
    booking_id: uuid.UUID,
    claim_token: uuid.UUID,
    intent_id: str,
) -> bool:
    """Close our claim with the intent Stripe made; False if the claim was taken over."""
    done = await conn.fetchval(
        """UPDATE payment_intent_attempts
              SET status = 'created', stripe_payment_intent_id = $3, last_error = NULL,
                  updated_at = now()
            WHERE booking_id = $1 AND claim_token = $2 AND status = 'creating'
           RETURNING true""",
        booking_id,
        claim_token,
        intent_id,
    )
    return bool(done)


async def intent_attempt_failed(
    conn: asyncpg.Connection,
    *,
    booking_id: uuid.UUID,
    claim_token: uuid.UUID,
    refused: bool,
    error: str,
) -> None:
    """Release our claim after Stripe failed, so the next call may try at once."""
    await conn.execute(
        """UPDATE payment_intent_attempts
              SET status = 'failed', refused = $3, last_error = $4, lease_until = now(),
                  updated_at = now()
            WHERE booking_id = $1 AND claim_token = $2 AND status = 'creating'""",
        booking_id,
        claim_token,
        refused,
        error,
    )
