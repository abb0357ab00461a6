-- The outbox gets the topic layout of streams/topics.py (one stream per aggregate family) and a
-- per-aggregate sequence; the `analytics` schema holds the read models the agents materialize.

-- 1. Per-aggregate order ---------------------------------------------------------------------
ALTER TABLE outbox ADD COLUMN stream text, ADD COLUMN sequence bigint;

UPDATE outbox SET stream = CASE
    WHEN event_type IN ('user.registered', 'profile.updated') THEN 'users'
    WHEN event_type = 'review.created' THEN 'reviews'
    WHEN event_type = 'message.sent' THEN 'messages'
    WHEN event_type IN ('rating.updated') THEN 'ratings'
    WHEN event_type IN ('match.scored') THEN 'matches'
    WHEN split_part(event_type, '.', 1) IN ('project', 'bid', 'booking', 'payment', 'escrow', 'dispute')
        THEN 'gigs'
END;
WITH numbered AS (
    SELECT id, row_number() OVER (PARTITION BY stream, key ORDER BY id) AS n
      FROM outbox WHERE stream IS NOT NULL
)
UPDATE outbox o SET sequence = numbered.n FROM numbered WHERE o.id = numbered.id;
UPDATE outbox SET payload = payload || jsonb_build_object('sequence', sequence)
 WHERE sequence IS NOT NULL;

-- The last sequence given out per aggregate. The writing transaction bumps its aggregate's row
-- (bridges/outbox.py) and holds that row lock until it commits, so the next writer of the same
-- aggregate gets the next number only after this one is durable: sequence order is commit order,
-- and outbox ids follow it too.
CREATE TABLE outbox_streams (
    stream        text NOT NULL,
    key           text NOT NULL,
    last_sequence bigint NOT NULL CHECK (last_sequence > 0),
    PRIMARY KEY (stream, key)
);
INSERT INTO outbox_streams (stream, key, last_sequence)
SELECT stream, key, max(sequence) FROM outbox WHERE stream IS NOT NULL GROUP BY stream, key;

CREATE UNIQUE INDEX outbox_stream_sequence ON outbox (stream, key, sequence);
-- A row either has both (every row the write side makes) or neither (a type no stream carries,
-- which the relay dead-letters).
ALTER TABLE outbox ADD CONSTRAINT outbox_stream_sequence_together
    CHECK ((stream IS NULL) = (sequence IS NULL));

-- 2. One writer per fact: ratings belong to the ratings agent (analytics.worker_ratings) -------
ALTER TABLE worker_profiles DROP COLUMN rating_average, DROP COLUMN rating_count;

-- 3. Read models for analysts ----------------------------------------------------------------
-- Written only by the worker's materializers (tables/); every write is an idempotent upsert
-- guarded by the aggregate sequence it reflects, so replays and redeliveries change nothing.
CREATE SCHEMA analytics;

-- One row per booking (escrow hold): where its money is. For every row
-- funded = held + released + refunded and released = worker_net + fee.
CREATE TABLE analytics.escrow_balances (
    booking_id       uuid PRIMARY KEY,
    project_id       uuid NOT NULL,
    escrow_id        uuid NOT NULL,
    client_id        uuid NOT NULL,
    worker_id        uuid NOT NULL,
    currency         char(3) NOT NULL,
    agreed_cents     bigint NOT NULL,
    status           text NOT NULL CHECK (status IN (
                         'unfunded', 'funded', 'frozen', 'released', 'refunded', 'split')),
    funded_cents     bigint NOT NULL,
    held_cents       bigint NOT NULL,
    released_cents   bigint NOT NULL,
    worker_net_cents bigint NOT NULL,
    fee_cents        bigint NOT NULL,
    refunded_cents   bigint NOT NULL,
    -- The gig's event sequence this row reflects; an older one never overwrites it.
    last_sequence    bigint NOT NULL,
    updated_at       timestamptz NOT NULL,
    materialized_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (funded_cents = held_cents + released_cents + refunded_cents),
    CHECK (released_cents = worker_net_cents + fee_cents)
);
CREATE INDEX escrow_balances_worker ON analytics.escrow_balances (worker_id);
CREATE INDEX escrow_balances_client ON analytics.escrow_balances (client_id);
CREATE INDEX escrow_balances_project ON analytics.escrow_balances (project_id);

-- Every money movement of every hold, one row per event (the event id is the key).
CREATE TABLE analytics.escrow_movements (
    event_id     uuid PRIMARY KEY,
    booking_id   uuid NOT NULL,
    project_id   uuid NOT NULL,
    client_id    uuid NOT NULL,
    worker_id    uuid NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('funded', 'released', 'refunded', 'disputed')),
    amount_cents bigint NOT NULL,
    fee_cents    bigint NOT NULL,
    currency     char(3) NOT NULL,
    occurred_at  timestamptz NOT NULL,
    day          date NOT NULL,
    -- When the worker wrote it: materialized_at - occurred_at is this event's end-to-end lag.
    materialized_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX escrow_movements_day ON analytics.escrow_movements (day, currency);

-- Per party and per day, derived in SQL from the two tables above, so they can never disagree
-- with them (and no second writer has to keep running totals in step).
CREATE VIEW analytics.worker_earnings AS
SELECT worker_id,
       currency,
       sum(worker_net_cents)::bigint AS earned_cents,
       sum(held_cents)::bigint AS pending_cents,
       sum(fee_cents)::bigint AS fees_cents,
       count(*) AS bookings,
       count(*) FILTER (WHERE funded_cents > 0) AS funded_bookings,
       max(updated_at) AS updated_at
  FROM analytics.escrow_balances
 GROUP BY worker_id, currency;

CREATE VIEW analytics.client_spend AS
SELECT client_id,
       currency,
       sum(released_cents)::bigint AS spent_cents,
       sum(held_cents)::bigint AS in_escrow_cents,
       sum(funded_cents)::bigint AS paid_cents,
       sum(refunded_cents)::bigint AS refunded_cents,
       sum(fee_cents)::bigint AS fees_cents,
       count(*) AS bookings,
       max(updated_at) AS updated_at
  FROM analytics.escrow_balances
 GROUP BY client_id, currency;

-- GMV is what clients paid into escrow that day; fees are what the platform kept on releases.
CREATE VIEW analytics.platform_daily AS
SELECT day,
       currency,
       coalesce(sum(amount_cents) FILTER (WHERE kind = 'funded'), 0)::bigint AS gmv_cents,
       coalesce(sum(fee_cents) FILTER (WHERE kind = 'released'), 0)::bigint AS fees_cents,
       coalesce(sum(amount_cents) FILTER (WHERE kind = 'released'), 0)::bigint AS released_cents,
       coalesce(sum(amount_cents) FILTER (WHERE kind = 'refunded'), 0)::bigint AS refunds_cents,
       count(*) FILTER (WHERE kind = 'funded') AS payments,
       count(*) FILTER (WHERE kind = 'released') AS releases,
       count(*) FILTER (WHERE kind = 'refunded') AS refunds,
       count(*) FILTER (WHERE kind = 'disputed') AS disputes
  FROM analytics.escrow_movements
 GROUP BY day, currency;

-- One row per rated user, per side (workers and clients are ranked apart).
CREATE TABLE analytics.user_ratings (
    user_id         uuid PRIMARY KEY,
    role            text NOT NULL CHECK (role IN ('worker', 'client')),
    count           integer NOT NULL CHECK (count >= 0),
    sum             integer NOT NULL,
    stars_1         integer NOT NULL,
    stars_2         integer NOT NULL,
    stars_3         integer NOT NULL,
    stars_4         integer NOT NULL,
    stars_5         integer NOT NULL,
    average         numeric(5, 4),
    bayesian        numeric(5, 4) NOT NULL,
    last_sequence   bigint NOT NULL,
    updated_at      timestamptz NOT NULL,
    materialized_at timestamptz NOT NULL DEFAULT now(),
    CHECK (count = stars_1 + stars_2 + stars_3 + stars_4 + stars_5)
);
CREATE INDEX user_ratings_rank ON analytics.user_ratings (role, bayesian DESC);

CREATE VIEW analytics.worker_ratings AS
SELECT user_id AS worker_id, count, sum, stars_1, stars_2, stars_3, stars_4, stars_5, average,
       bayesian, updated_at
  FROM analytics.user_ratings WHERE role = 'worker';
