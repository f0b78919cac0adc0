-- API keys, the example tenant resource, usage metering (SQLite).
-- Keep in step with ../postgres/0006_keys_usage.sql.

CREATE TABLE api_keys (
    org_id               BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id                   BLOB NOT NULL,
    name                 TEXT NOT NULL,
    prefix               TEXT NOT NULL,
    secret_hash          TEXT NOT NULL,
    previous_hash        TEXT,
    previous_expires_at  TEXT,
    scopes               TEXT NOT NULL,
    rate_limit           INTEGER,
    rate_window_sec      INTEGER,
    created_by           BLOB,
    created_at           TEXT NOT NULL,
    expires_at           TEXT,
    last_used_at         TEXT,
    revoked_at           TEXT,
    PRIMARY KEY (org_id, id),
    CONSTRAINT api_keys_id_key UNIQUE (id),
    CONSTRAINT api_keys_prefix_key UNIQUE (prefix),
    CHECK ((rate_limit IS NULL) = (rate_window_sec IS NULL))
);

CREATE TABLE data_items (
    org_id      BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id          BLOB NOT NULL,
    name        TEXT NOT NULL,
    value       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (org_id, id)
);

CREATE TABLE usage_events (
    org_id           BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id               BLOB NOT NULL,
    meter            TEXT NOT NULL,
    quantity         INTEGER NOT NULL CHECK (quantity >= 0),
    occurred_at      TEXT NOT NULL,
    day              TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    rolled_up        BOOLEAN NOT NULL DEFAULT FALSE,
    created_at       TEXT NOT NULL,
    PRIMARY KEY (org_id, id),
    CONSTRAINT usage_events_idempotency_key UNIQUE (org_id, idempotency_key)
);
CREATE INDEX usage_events_pending ON usage_events (org_id, day) WHERE NOT rolled_up;
CREATE INDEX usage_events_rolled ON usage_events (created_at) WHERE rolled_up;

CREATE TABLE usage_daily (
    org_id    BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    meter     TEXT NOT NULL,
    day       TEXT NOT NULL,
    quantity  INTEGER NOT NULL,
    PRIMARY KEY (org_id, meter, day)
);
