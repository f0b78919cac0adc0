-- Audit records without a per-organization write lock (issue 12); see the PostgreSQL
-- migration of the same name. SQLite cannot drop key columns, so `audit_events` is rebuilt
-- (dropping a table runs no row triggers).

CREATE TABLE audit_chain (
    org_id     BLOB NOT NULL,
    seq        INTEGER NOT NULL,
    record_id  BLOB NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL,
    sealed_at  TEXT NOT NULL,
    PRIMARY KEY (org_id, seq),
    CONSTRAINT audit_chain_record_key UNIQUE (org_id, record_id)
);

INSERT INTO audit_chain (org_id, seq, record_id, prev_hash, hash, sealed_at)
    SELECT org_id, seq, id, prev_hash, hash, created_at FROM audit_events;

CREATE TABLE audit_pending (
    org_id     BLOB NOT NULL,
    record_id  BLOB NOT NULL,
    PRIMARY KEY (org_id, record_id)
);

CREATE TABLE audit_records (
    org_id       BLOB NOT NULL,
    id           BLOB NOT NULL,
    actor_type   TEXT NOT NULL,
    actor_id     TEXT,
    action       TEXT NOT NULL,
    target_type  TEXT,
    target_id    TEXT,
    metadata     TEXT NOT NULL,
    ip           TEXT,
    user_agent   TEXT,
    request_id   TEXT,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (org_id, id)
);
INSERT INTO audit_records
    SELECT org_id, id, actor_type, actor_id, action, target_type, target_id, metadata, ip,
           user_agent, request_id, created_at
    FROM audit_events;
DROP TABLE audit_events;
ALTER TABLE audit_records RENAME TO audit_events;

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;

CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;

CREATE TRIGGER audit_chain_no_update BEFORE UPDATE ON audit_chain
BEGIN
    SELECT RAISE(ABORT, 'audit_chain is append-only');
END;

CREATE TRIGGER audit_chain_no_delete BEFORE DELETE ON audit_chain
BEGIN
    SELECT RAISE(ABORT, 'audit_chain is append-only');
END;
