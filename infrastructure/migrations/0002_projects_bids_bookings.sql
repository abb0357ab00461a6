-- The gig lifecycle's write side: projects, bids, bookings with their escrow holds, reviews.
-- State machines are enforced by the API under row locks; the constraints here are the last line
-- (a bug or a hand-written UPDATE must not leave two accepted bids or a negative amount).

-- Lowercased skills, so "Python" finds "python"; IMMUTABLE so it can feed a generated column.
CREATE FUNCTION lower_skills(skills text[]) RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN ARRAY(SELECT lower(s) FROM unnest(skills) WITH ORDINALITY AS t(s, n) ORDER BY n);

CREATE TABLE projects (
    id              uuid PRIMARY KEY,
    client_id       uuid NOT NULL REFERENCES users (id),
    title           text NOT NULL CHECK (char_length(title) BETWEEN 3 AND 200),
    description     text NOT NULL DEFAULT '' CHECK (char_length(description) <= 20000),
    -- api/money.py MAX_AMOUNT_CENTS ($10M).
    budget_cents    bigint NOT NULL CHECK (budget_cents > 0 AND budget_cents <= 1000000000),
    currency        char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    required_skills text[] NOT NULL DEFAULT '{}' CHECK (cardinality(required_skills) <= 30),
    skill_keys      text[] NOT NULL GENERATED ALWAYS AS (lower_skills(required_skills)) STORED,
    deadline        timestamptz,
    status          text NOT NULL DEFAULT 'open' CHECK (status IN (
                        'open', 'awarded', 'in_progress', 'delivered', 'completed', 'cancelled',
                        'disputed')),
    worker_id       uuid REFERENCES users (id),
    accepted_bid_id uuid,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- Awarding sets both, nothing ever clears one without the other.
    CHECK ((worker_id IS NULL) = (accepted_bid_id IS NULL)),
    CHECK (status <> 'open' OR worker_id IS NULL),
    CHECK (status NOT IN ('awarded', 'in_progress', 'delivered', 'completed')
           OR worker_id IS NOT NULL)
);
-- The board (newest first, keyset on (created_at, id)), "my projects", skill filters.
CREATE INDEX projects_board ON projects (status, created_at DESC, id DESC);
CREATE INDEX projects_recent ON projects (created_at DESC, id DESC);
CREATE INDEX projects_client ON projects (client_id, created_at DESC, id DESC);
CREATE INDEX projects_worker ON projects (worker_id) WHERE worker_id IS NOT NULL;
CREATE INDEX projects_skill_keys ON projects USING gin (skill_keys);

CREATE TABLE bids (
    id            uuid PRIMARY KEY,
    project_id    uuid NOT NULL REFERENCES projects (id),
    worker_id     uuid NOT NULL REFERENCES users (id),
    amount_cents  bigint NOT NULL CHECK (amount_cents > 0 AND amount_cents <= 1000000000),
    currency      char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    delivery_days integer NOT NULL CHECK (delivery_days BETWEEN 1 AND 365),
    proposal      text NOT NULL CHECK (char_length(proposal) BETWEEN 1 AND 5000),
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'accepted', 'rejected', 'withdrawn')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    -- Target of the composite foreign keys below: a project's accepted bid is one of its own.
    UNIQUE (id, project_id)
);
-- One accepted bid per project, whatever the API does.
CREATE UNIQUE INDEX bids_one_accepted_per_project ON bids (project_id) WHERE status = 'accepted';
-- One live bid per worker per project; a withdrawn bid frees the slot for a new one.
CREATE UNIQUE INDEX bids_one_live_per_worker ON bids (project_id, worker_id)
    WHERE status IN ('pending', 'accepted');
CREATE INDEX bids_project ON bids (project_id, created_at DESC, id DESC);
CREATE INDEX bids_worker ON bids (worker_id, project_id);

ALTER TABLE projects ADD CONSTRAINT projects_accepted_bid_fk
    FOREIGN KEY (accepted_bid_id, id) REFERENCES bids (id, project_id);

CREATE TABLE bookings (
    id                  uuid PRIMARY KEY,
    project_id          uuid NOT NULL UNIQUE REFERENCES projects (id),
    bid_id              uuid NOT NULL UNIQUE REFERENCES bids (id),
    client_id           uuid NOT NULL REFERENCES users (id),
    worker_id           uuid NOT NULL REFERENCES users (id),
    agreed_amount_cents bigint NOT NULL
                        CHECK (agreed_amount_cents > 0 AND agreed_amount_cents <= 1000000000),
    currency            char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    created_at          timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (bid_id, project_id) REFERENCES bids (id, project_id),
    CHECK (client_id <> worker_id)
);
CREATE INDEX bookings_client ON bookings (client_id);
CREATE INDEX bookings_worker ON bookings (worker_id);

-- Created 'unfunded' with its booking; payments fund it, escrow releases, refunds or freezes it.
-- fee/net come from api/money.py platform_fee, computed once when the hold is made.
CREATE TABLE escrow_holds (
    id           uuid PRIMARY KEY,
    booking_id   uuid NOT NULL UNIQUE REFERENCES bookings (id),
    project_id   uuid NOT NULL UNIQUE REFERENCES projects (id),
    client_id    uuid NOT NULL REFERENCES users (id),
    worker_id    uuid NOT NULL REFERENCES users (id),
    amount_cents bigint NOT NULL CHECK (amount_cents > 0),
    fee_cents    bigint NOT NULL CHECK (fee_cents >= 0),
    net_cents    bigint NOT NULL CHECK (net_cents >= 0),
    currency     char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status       text NOT NULL DEFAULT 'unfunded' CHECK (status IN (
                     'unfunded', 'funded', 'frozen', 'released', 'refunded', 'split')),
    funded_at    timestamptz,
    released_at  timestamptz,
    refunded_at  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (fee_cents + net_cents = amount_cents)
);
CREATE INDEX escrow_holds_status ON escrow_holds (status);

-- One review per reviewer per project, about the other party of that project.
CREATE TABLE reviews (
    id          uuid PRIMARY KEY,
    project_id  uuid NOT NULL REFERENCES projects (id),
    reviewer_id uuid NOT NULL REFERENCES users (id),
    reviewee_id uuid NOT NULL REFERENCES users (id),
    rating      smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
    comment     text NOT NULL DEFAULT '' CHECK (char_length(comment) <= 2000),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, reviewer_id),
    CHECK (reviewer_id <> reviewee_id)
);
CREATE INDEX reviews_reviewee ON reviews (reviewee_id, created_at DESC, id DESC);
