-- Background jobs (PostgreSQL). Keep in step with ../sqlite/0004_jobs.sql.
-- Tenant jobs carry their org_id (under RLS); Tenantry's own jobs use the platform id.
-- Workers claim with FOR UPDATE SKIP LOCKED in system scope.

CREATE TABLE jobs (
    org_id           uuid NOT NULL,
    id               uuid NOT NULL,
    kind             text NOT NULL,
    payload          text NOT NULL,
    status           text NOT NULL CHECK (status IN ('available', 'running', 'succeeded', 'dead', 'cancelled')),
    attempts         integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL,
    run_at           timestamptz NOT NULL,
    locked_by        text,
    locked_until     timestamptz,
    idempotency_key  text,
    request_hash     text,
    last_error       text,
    result           text,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    started_at       timestamptz,
    finished_at      timestamptz,
    PRIMARY KEY (org_id, id),
    CONSTRAINT jobs_id_key UNIQUE (id),
    CONSTRAINT jobs_idempotency_key UNIQUE (org_id, idempotency_key)
);
CREATE INDEX jobs_available ON jobs (run_at, id) WHERE status = 'available';
CREATE INDEX jobs_running ON jobs (locked_until) WHERE status = 'running';
CREATE INDEX jobs_org_status ON jobs (org_id, status, id);

ALTER TABLE jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE jobs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON jobs
    USING (org_id = tenantry_current_org() OR tenantry_is_system())
    WITH CHECK (org_id = tenantry_current_org() OR tenantry_is_system());

GRANT SELECT, INSERT, UPDATE, DELETE ON jobs TO tenantry_app;
