-- Creating a booking's PaymentIntent in three steps, so that no database connection or row lock
-- waits on Stripe: a short transaction claims the attempt here and commits, the Stripe call runs
-- with nothing held, a second short transaction records the payment (api/payments/service.py).
--
-- The claim is what keeps two API processes from each creating an intent for one booking while
-- the first is at Stripe; its lease lets a call that crashed or hung past its deadline be taken
-- over. A row that is not 'creating', or whose lease ran out, blocks nothing.
CREATE TABLE payment_intent_attempts (
    booking_id               uuid PRIMARY KEY REFERENCES bookings (id),
    -- Sent with the create: a retry after a lost answer (a timeout, a crash before the record)
    -- gets the intent the lost try made, never a second one. A new key is taken only after
    -- Stripe refused the create outright, since Stripe replays a refusal under its key.
    idempotency_key          text NOT NULL,
    status                   text NOT NULL CHECK (status IN ('creating', 'created', 'failed')),
    -- The call holding the claim: only it may record the outcome.
    claim_token              uuid NOT NULL,
    lease_until              timestamptz NOT NULL,
    attempts                 integer NOT NULL DEFAULT 1 CHECK (attempts > 0),
    -- The last failure was Stripe saying no (not an outage): the next try needs a new key.
    refused                  boolean NOT NULL DEFAULT false,
    stripe_payment_intent_id text,
    last_error               text,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'created') = (stripe_payment_intent_id IS NOT NULL))
);
