-- Money: Stripe payments that fund escrow holds, refunds, payouts to workers, the Stripe
-- webhook ledger, and disputes. Amounts are integer cents with their currency; every row that
-- moves money has a unique key so a retried request or a replayed webhook cannot apply twice.

-- One PaymentIntent per booking: a declined card leaves the intent in requires_payment_method
-- and the client retries on the same intent, so "failed" is the latest attempt's outcome, not
-- the end of the payment.
CREATE TABLE payments (
    id                       uuid PRIMARY KEY,
    booking_id               uuid NOT NULL UNIQUE REFERENCES bookings (id),
    escrow_id                uuid NOT NULL UNIQUE REFERENCES escrow_holds (id),
    project_id               uuid NOT NULL REFERENCES projects (id),
    client_id                uuid NOT NULL REFERENCES users (id),
    stripe_payment_intent_id text NOT NULL UNIQUE,
    stripe_charge_id         text,
    amount_cents             bigint NOT NULL CHECK (amount_cents > 0 AND amount_cents <= 1000000000),
    fee_cents                bigint NOT NULL CHECK (fee_cents >= 0),
    net_cents                bigint NOT NULL CHECK (net_cents >= 0),
    currency                 char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status                   text NOT NULL DEFAULT 'pending'
                             CHECK (status IN ('pending', 'succeeded', 'failed')),
    refunded_cents           bigint NOT NULL DEFAULT 0,
    failure_code             text,
    failure_message          text,
    -- Why a webhook for this payment was not applied (amount or currency mismatch), for support.
    anomaly                  text,
    succeeded_at             timestamptz,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    CHECK (fee_cents + net_cents = amount_cents),
    CHECK (refunded_cents BETWEEN 0 AND amount_cents)
);
CREATE INDEX payments_client ON payments (client_id, created_at DESC, id DESC);

-- Every Stripe event we accepted, inserted in the same transaction as its effect: a redelivery
-- finds its id here and changes nothing.
CREATE TABLE stripe_events (
    id          text PRIMARY KEY,
    type        text NOT NULL,
    outcome     text NOT NULL DEFAULT 'applied' CHECK (outcome IN ('applied', 'ignored', 'rejected')),
    note        text,
    payment_id  uuid REFERENCES payments (id),
    received_at timestamptz NOT NULL DEFAULT now()
);

-- Money given back to a client. Ours carry the reason we refunded; refunds made outside the
-- API (Stripe dashboard) arrive by the charge.refunded webhook as 'external'.
CREATE TABLE refunds (
    id               uuid PRIMARY KEY,
    payment_id       uuid NOT NULL REFERENCES payments (id),
    escrow_id        uuid NOT NULL REFERENCES escrow_holds (id),
    stripe_refund_id text UNIQUE,
    amount_cents     bigint NOT NULL CHECK (amount_cents > 0),
    currency         char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    reason           text NOT NULL CHECK (reason IN ('cancellation', 'dispute', 'external')),
    dispute_id       uuid,
    created_by       uuid REFERENCES users (id),
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refunds_payment ON refunds (payment_id);
-- We refund an escrow at most once (cancellation, dispute refund or the client part of a split).
CREATE UNIQUE INDEX refunds_one_ours_per_escrow ON refunds (escrow_id) WHERE reason <> 'external';

-- What an escrow release owes the worker. Workers have no Stripe connected account yet (and
-- localstripe has no Transfers), so a release records the payout as 'pending_transfer'; the
-- money stays on the platform balance until a payout job transfers it and sets the transfer id.
CREATE TABLE payouts (
    id                 uuid PRIMARY KEY,
    escrow_id          uuid NOT NULL UNIQUE REFERENCES escrow_holds (id),
    worker_id          uuid NOT NULL REFERENCES users (id),
    -- What the worker receives (net), and the platform fee kept on this part of the hold.
    amount_cents       bigint NOT NULL CHECK (amount_cents > 0),
    fee_cents          bigint NOT NULL CHECK (fee_cents >= 0),
    currency           char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status             text NOT NULL DEFAULT 'pending_transfer'
                       CHECK (status IN ('pending_transfer', 'transferred')),
    stripe_transfer_id text UNIQUE,
    dispute_id         uuid,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'transferred') = (stripe_transfer_id IS NOT NULL))
);
CREATE INDEX payouts_worker ON payouts (worker_id, created_at DESC);

CREATE TABLE disputes (
    id                      uuid PRIMARY KEY,
    project_id              uuid NOT NULL REFERENCES projects (id),
    escrow_id               uuid NOT NULL REFERENCES escrow_holds (id),
    opened_by               uuid NOT NULL REFERENCES users (id),
    reason                  text NOT NULL CHECK (char_length(reason) BETWEEN 10 AND 5000),
    evidence                jsonb NOT NULL DEFAULT '[]',
    status                  text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    -- The project's status when the dispute opened, for the record and for support.
    previous_project_status text NOT NULL,
    resolution              text CHECK (resolution IN ('release', 'refund', 'split')),
    worker_amount_cents     bigint CHECK (worker_amount_cents >= 0),
    client_amount_cents     bigint CHECK (client_amount_cents >= 0),
    fee_cents               bigint CHECK (fee_cents >= 0),
    resolution_note         text CHECK (char_length(resolution_note) <= 5000),
    resolved_by             uuid REFERENCES users (id),
    resolved_at             timestamptz,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'resolved') = (resolution IS NOT NULL)),
    CHECK ((status = 'resolved') = (resolved_at IS NOT NULL))
);
-- One open dispute per project.
CREATE UNIQUE INDEX disputes_one_open_per_project ON disputes (project_id) WHERE status = 'open';
CREATE INDEX disputes_project ON disputes (project_id, created_at DESC);

ALTER TABLE refunds ADD CONSTRAINT refunds_dispute_fk FOREIGN KEY (dispute_id) REFERENCES disputes (id);
ALTER TABLE payouts ADD CONSTRAINT payouts_dispute_fk FOREIGN KEY (dispute_id) REFERENCES disputes (id);
