-- Background jobs (SQLite). Keep in step with ../postgres/0004_jobs.sql.
-- Tenant jobs carry their org_id; Tenantry's own jobs use the platform id (all zeros).

CREATE TABLE jobs (
    org_id           BLOB NOT NULL,
    id               BLOB NOT NULL,
    kind             TEXT NOT NULL,
    payload          TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('available', 'running', 'succeeded', 'dead', 'cancelled')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    run_at           TEXT NOT NULL,
    locked_by        TEXT,
    locked_until     TEXT,
    idempotency_key  TEXT,
    request_hash     TEXT,
    last_error       TEXT,
    result           TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    started_at       TEXT,
    finished_at      TEXT,
    PRIMARY KEY (org_id, id),
    CONSTRAINT jobs_id_key UNIQUE (id),
    CONSTRAINT jobs_idempotency_key UNIQUE (org_id, idempotency_key)
);
CREATE INDEX jobs_available ON jobs (run_at, id) WHERE status = 'available';
CREATE INDEX jobs_running ON jobs (locked_until) WHERE status = 'running';
CREATE INDEX jobs_org_status ON jobs (org_id, status, id);
