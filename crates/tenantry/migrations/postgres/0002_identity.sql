-- Identity (PostgreSQL). Keep in step with ../sqlite/0002_identity.sql.
-- Users are global (one person, many organizations), so these tables carry no org_id and
-- no tenant policy. Every token is stored as its SHA-256.

CREATE TABLE users (
    id                 uuid PRIMARY KEY,
    email              citext NOT NULL,
    name               text NOT NULL,
    password_hash      text NOT NULL,
    email_verified_at  timestamptz,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    CONSTRAINT users_email_key UNIQUE (email)
);

CREATE TABLE refresh_tokens (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id    uuid NOT NULL,
    token_hash   text NOT NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz,
    revoked_at   timestamptz,
    CONSTRAINT refresh_tokens_hash_key UNIQUE (token_hash)
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

CREATE TABLE sessions (
    id            uuid PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash    text NOT NULL,
    created_at    timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz,
    ip            text,
    user_agent    text,
    CONSTRAINT sessions_hash_key UNIQUE (token_hash)
);
CREATE INDEX sessions_user ON sessions (user_id, created_at);

CREATE TABLE email_tokens (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose     text NOT NULL CHECK (purpose IN ('verify_email', 'reset_password')),
    token_hash  text NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    CONSTRAINT email_tokens_hash_key UNIQUE (token_hash)
);

CREATE TABLE email_outbox (
    id          uuid PRIMARY KEY,
    recipient   text NOT NULL,
    subject     text NOT NULL,
    body        text NOT NULL,
    created_at  timestamptz NOT NULL,
    next_try_at timestamptz NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,
    sent_at     timestamptz,
    last_error  text
);
CREATE INDEX email_outbox_pending ON email_outbox (next_try_at) WHERE sent_at IS NULL;

CREATE TABLE signing_keys (
    kid         text PRIMARY KEY,
    public_key  text NOT NULL,
    created_at  timestamptz NOT NULL,
    retired_at  timestamptz
);

GRANT SELECT, INSERT, UPDATE, DELETE
    ON users, refresh_tokens, sessions, email_tokens, email_outbox, signing_keys
    TO tenantry_app;
