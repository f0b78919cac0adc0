-- Audit records without a per-organization write lock (issue 12).
--
-- A change's transaction inserts its record into `audit_events` (content only) and a
-- marker into `audit_pending`; nothing it touches is shared with the other writers of the
-- organization. The sealer links pending records into the organization's hash chain
-- (`audit_chain`, one row per position) in batches, under the chain head's row lock, which
-- only sealers take. The hash formula is unchanged, so existing chains move over intact.

CREATE TABLE audit_chain (
    org_id     uuid NOT NULL,
    seq        bigint NOT NULL,
    record_id  uuid NOT NULL,
    prev_hash  text NOT NULL,
    hash       text NOT NULL,
    sealed_at  timestamptz NOT NULL,
    PRIMARY KEY (org_id, seq),
    CONSTRAINT audit_chain_record_key UNIQUE (org_id, record_id)
);

INSERT INTO audit_chain (org_id, seq, record_id, prev_hash, hash, sealed_at)
    SELECT org_id, seq, id, prev_hash, hash, created_at FROM audit_events;

-- Records written but not yet linked; the sealer deletes a marker when it seals the record.
CREATE TABLE audit_pending (
    org_id     uuid NOT NULL,
    record_id  uuid NOT NULL,
    PRIMARY KEY (org_id, record_id)
);

-- `audit_events` keeps the content. DDL is not a row change: the append-only trigger stays.
ALTER TABLE audit_events DROP CONSTRAINT audit_events_pkey;
ALTER TABLE audit_events DROP CONSTRAINT audit_events_id_key;
DROP INDEX audit_events_org_action;
ALTER TABLE audit_events DROP COLUMN seq, DROP COLUMN prev_hash, DROP COLUMN hash;
ALTER TABLE audit_events ADD PRIMARY KEY (org_id, id);

CREATE TRIGGER audit_chain_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_chain
    FOR EACH STATEMENT EXECUTE FUNCTION tenantry_refuse_change();

ALTER TABLE audit_chain ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_chain FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_chain
    USING (org_id = tenantry_current_org() OR tenantry_is_system())
    WITH CHECK (org_id = tenantry_current_org() OR tenantry_is_system());

ALTER TABLE audit_pending ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_pending FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_pending
    USING (org_id = tenantry_current_org() OR tenantry_is_system())
    WITH CHECK (org_id = tenantry_current_org() OR tenantry_is_system());

-- Chain rows are insert and read only, like the records; markers are removed when sealed.
GRANT SELECT, INSERT ON audit_chain TO tenantry_app;
GRANT SELECT, INSERT, DELETE ON audit_pending TO tenantry_app;
