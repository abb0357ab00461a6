-- A refund of ours in three steps, so that no database connection or row lock waits on Stripe
-- (api/escrow/refunds.py): a short transaction decides and claims it here, moving the hold to
-- 'refunding', and commits; the Stripe refund runs with nothing held; a short transaction records
-- the refund and the hold's final state, conditional on the claim still being pending.
--
-- The claim pins what was decided (the amount, the idempotency key, and for a dispute the whole
-- resolution), so a retry after an outage or a crash sends Stripe the very same refund, which
-- Stripe answers with the refund the lost try made, never a second one.
ALTER TABLE escrow_holds DROP CONSTRAINT escrow_holds_status_check;
ALTER TABLE escrow_holds ADD CONSTRAINT escrow_holds_status_check CHECK (status IN (
    'unfunded', 'funded', 'frozen', 'refunding', 'released', 'refunded', 'split'));

CREATE TABLE refund_claims (
    -- We refund a hold at most once (refunds_one_ours_per_escrow): one claim per hold.
    escrow_id           uuid PRIMARY KEY REFERENCES escrow_holds (id),
    payment_id          uuid NOT NULL REFERENCES payments (id),
    -- What the refund finishes: a dispute's resolution, a project's cancellation, or a payment
    -- that succeeded for a project already cancelled (the webhook's automatic refund).
    purpose             text NOT NULL
                        CHECK (purpose IN ('dispute', 'cancel_project', 'cancelled_payment')),
    status              text NOT NULL CHECK (status IN ('pending', 'refunded', 'refused')),
    amount_cents        bigint NOT NULL CHECK (amount_cents > 0),
    currency            char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- Kept across outages (the lost refund may have been made); a new one only after Stripe
    -- refused outright, since Stripe replays a refusal under its key.
    idempotency_key     text NOT NULL,
    attempts            integer NOT NULL DEFAULT 1 CHECK (attempts > 0),
    -- Where the hold goes back to if Stripe refuses: 'funded' or 'frozen'.
    previous_status     text NOT NULL CHECK (previous_status IN ('funded', 'frozen')),
    actor_id            uuid REFERENCES users (id),
    -- A dispute's decision, applied whole when the refund is recorded.
    dispute_id          uuid REFERENCES disputes (id),
    resolution          text CHECK (resolution IN ('refund', 'split')),
    worker_amount_cents bigint CHECK (worker_amount_cents >= 0),
    fee_cents           bigint CHECK (fee_cents >= 0),
    note                text,
    stripe_refund_id    text,
    last_error          text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK ((purpose = 'dispute') = (dispute_id IS NOT NULL AND resolution IS NOT NULL)),
    CHECK ((status = 'refunded') = (stripe_refund_id IS NOT NULL))
);
CREATE INDEX refund_claims_pending ON refund_claims (updated_at) WHERE status = 'pending';
