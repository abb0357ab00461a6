-- Users, their profiles and settings, refresh-token families, and the transactional outbox.

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    email         text NOT NULL,
    password_hash text NOT NULL,
    role          text NOT NULL CHECK (role IN ('worker', 'client', 'admin')),
    name          text NOT NULL,
    is_active     boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- Emails are unique regardless of case: "Ann@X.io" and "ann@x.io" are one account.
CREATE UNIQUE INDEX users_email_ci ON users (lower(email));

CREATE TABLE user_profiles (
    user_id      uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    bio          text NOT NULL DEFAULT '',
    skills       text[] NOT NULL DEFAULT '{}',
    experience   jsonb NOT NULL DEFAULT '[]',
    location     text NOT NULL DEFAULT '',
    avatar_url   text,
    portfolio    jsonb NOT NULL DEFAULT '[]',
    social_links jsonb NOT NULL DEFAULT '{}',
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX user_profiles_skills ON user_profiles USING gin (skills);

CREATE TABLE user_settings (
    user_id       uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    notifications jsonb NOT NULL DEFAULT '{}',
    privacy       jsonb NOT NULL DEFAULT '{}',
    preferences   jsonb NOT NULL DEFAULT '{}',
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE worker_profiles (
    user_id            uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    headline           text NOT NULL DEFAULT '',
    -- The API caps the rate at $10,000/h (api/users/schemas.py); this is the last line.
    hourly_rate_cents  bigint CHECK (hourly_rate_cents BETWEEN 0 AND 1000000),
    currency           char(3) NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    availability       text NOT NULL DEFAULT 'available'
                       CHECK (availability IN ('available', 'busy', 'unavailable')),
    rating_average     numeric(3, 2),
    rating_count       integer NOT NULL DEFAULT 0,
    completed_projects integer NOT NULL DEFAULT 0,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE client_profiles (
    user_id      uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    company_name text NOT NULL DEFAULT '',
    website      text,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- A login starts a family; every refresh rotates `current_jti`. Presenting any older token of
-- the family is a replay: the family is revoked and every token in it stops working.
CREATE TABLE refresh_token_families (
    id             uuid PRIMARY KEY,
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    current_jti    uuid NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    rotated_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoked_reason text CHECK (revoked_reason IN ('reuse', 'logout')),
    CHECK ((revoked_at IS NULL) = (revoked_reason IS NULL))
);
CREATE INDEX refresh_token_families_user ON refresh_token_families (user_id);

-- The outbox is also the event store: rows stay after publishing so `tulifo replay` can rebuild
-- every topic and read model.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    event_id     uuid NOT NULL UNIQUE,
    event_type   text NOT NULL,
    key          text NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_type ON outbox (event_type, id);

-- Wake the relay as soon as a transaction with events commits (NOTIFY is delivered on commit).
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tulifo_outbox', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER outbox_inserted AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
