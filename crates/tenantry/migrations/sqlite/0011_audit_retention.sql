-- Audit retention (issue 15); see the PostgreSQL migration of the same name. SQLite has no
-- roles: the triggers refuse every delete unless the retention path has announced, in this
-- transaction, which prefix of which chain it removes (`audit_pruning`).

CREATE TABLE audit_checkpoints (
    org_id     BLOB PRIMARY KEY,
    seq        INTEGER NOT NULL,
    hash       TEXT NOT NULL,
    pruned_at  TEXT NOT NULL,
    signature  TEXT NOT NULL
);

CREATE TABLE audit_pruning (
    org_id    BLOB PRIMARY KEY,
    upto_seq  INTEGER NOT NULL
);

CREATE INDEX audit_events_created ON audit_events (created_at);

DROP TRIGGER audit_events_no_delete;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
WHEN NOT EXISTS (SELECT 1 FROM audit_pruning p JOIN audit_chain c ON c.org_id = p.org_id
                 WHERE p.org_id = OLD.org_id AND c.record_id = OLD.id AND c.seq <= p.upto_seq)
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;

DROP TRIGGER audit_chain_no_delete;
CREATE TRIGGER audit_chain_no_delete BEFORE DELETE ON audit_chain
WHEN NOT EXISTS (SELECT 1 FROM audit_pruning p WHERE p.org_id = OLD.org_id AND OLD.seq <= p.upto_seq)
BEGIN
    SELECT RAISE(ABORT, 'audit_chain is append-only');
END;
