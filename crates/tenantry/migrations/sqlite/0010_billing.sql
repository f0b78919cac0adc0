-- Billing (SQLite). Keep in step with ../postgres/0010_billing.sql.

CREATE TABLE billing_accounts (
    org_id                BLOB PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
    customer_id           TEXT NOT NULL,
    subscription_id       TEXT,
    subscription_status   TEXT,
    subscription_created  TEXT,
    price_id              TEXT,
    current_period_start  TEXT,
    current_period_end    TEXT,
    cancel_at_period_end  INTEGER NOT NULL DEFAULT 0,
    past_due_since        TEXT,
    synced_at             TEXT,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL,
    CONSTRAINT billing_accounts_customer_key UNIQUE (customer_id)
);

CREATE TABLE billing_events (
    id            TEXT PRIMARY KEY,
    event_type    TEXT NOT NULL,
    created       TEXT NOT NULL,
    payload       TEXT NOT NULL,
    received_at   TEXT NOT NULL,
    processed_at  TEXT,
    org_id        BLOB,
    outcome       TEXT
);
CREATE INDEX billing_events_processed ON billing_events (processed_at);

CREATE TABLE billing_usage_reports (
    org_id       BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    meter        TEXT NOT NULL,
    day          TEXT NOT NULL,
    quantity     INTEGER NOT NULL,
    identifier   TEXT NOT NULL,
    reported_at  TEXT NOT NULL,
    PRIMARY KEY (org_id, meter, day)
);
