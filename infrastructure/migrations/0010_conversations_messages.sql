-- Messaging (seed 2.4): one conversation per project and worker, its messages in the order they
-- were sent, and how far each participant has read. PostgreSQL is the write side; the messages
-- agent (agents/messages.py) copies each message into MongoDB `flexwork_messages`, which serves
-- the history.

CREATE TABLE conversations (
    id            uuid PRIMARY KEY,
    project_id    uuid NOT NULL REFERENCES projects (id),
    client_id     uuid NOT NULL REFERENCES users (id),
    worker_id     uuid NOT NULL REFERENCES users (id),
    -- The sequence of the last message (0: none yet). Taken with `UPDATE … RETURNING`, which
    -- row-locks the conversation until the sending transaction ends: numbers follow commit order
    -- with no gaps, so the history orders by it without ties.
    last_sequence bigint NOT NULL DEFAULT 0 CHECK (last_sequence >= 0),
    -- The inbox order: the last message's time, or the opening time.
    last_activity_at timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- Opening is idempotent: a second open of the same pair finds this row.
    UNIQUE (project_id, worker_id),
    CHECK (client_id <> worker_id)
);
CREATE INDEX conversations_client ON conversations (client_id, last_activity_at DESC, id DESC);
CREATE INDEX conversations_worker ON conversations (worker_id, last_activity_at DESC, id DESC);

CREATE TABLE messages (
    id              uuid PRIMARY KEY,
    conversation_id uuid NOT NULL REFERENCES conversations (id),
    sequence        bigint NOT NULL CHECK (sequence >= 1),
    sender_id       uuid NOT NULL REFERENCES users (id),
    -- `system` is written by the platform only; clients send text or file (api/messages/schemas.py).
    type            text NOT NULL CHECK (type IN ('text', 'file', 'system')),
    -- api/messages/schemas.py MAX_CONTENT_CHARS.
    content         text NOT NULL CHECK (char_length(content) BETWEEN 1 AND 5000),
    created_at      timestamptz NOT NULL,
    UNIQUE (conversation_id, sequence)
);

-- One row per participant who has read anything; no row means nothing read. Moves forward only.
CREATE TABLE conversation_reads (
    conversation_id      uuid NOT NULL REFERENCES conversations (id),
    user_id              uuid NOT NULL REFERENCES users (id),
    last_read_sequence   bigint NOT NULL CHECK (last_read_sequence >= 1),
    last_read_message_id uuid NOT NULL REFERENCES messages (id),
    read_at              timestamptz NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);
