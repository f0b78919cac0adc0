-- Audit retention (issue 15). Keep in step with ../sqlite/0011_audit_retention.sql.
--
-- Retention removes a whole prefix of an organization's chain and keeps a signed
-- checkpoint: the last removed position and its hash, from which verification proves the
-- rest. The records and chain rows stay append-only for the service role (it has no
-- DELETE right on them and the triggers refuse every change); the one way to remove rows
-- is tenantry_prune_audit(), which runs as the schema owner, checks that the checkpoint
-- names the chain's real hash at that position, and is called by the retention job.

CREATE TABLE audit_checkpoints (
    org_id     uuid PRIMARY KEY,
    seq        bigint NOT NULL,
    hash       text NOT NULL,
    pruned_at  timestamptz NOT NULL,
    signature  text NOT NULL
);

ALTER TABLE audit_checkpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_checkpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_checkpoints
    USING (org_id = tenantry_current_org() OR tenantry_is_system())
    WITH CHECK (org_id = tenantry_current_org() OR tenantry_is_system());
GRANT SELECT ON audit_checkpoints TO tenantry_app;

CREATE INDEX audit_events_created ON audit_events (created_at);

-- Refuses every change, except the deletes of tenantry_prune_audit(): those run as the
-- owner (SECURITY DEFINER) with the transaction-local `tenantry.audit_prune` set.
CREATE FUNCTION tenantry_refuse_audit_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE'
       AND coalesce(current_setting('tenantry.audit_prune', true), '') = 'on'
       AND current_user = (SELECT tableowner FROM pg_tables
                           WHERE schemaname = TG_TABLE_SCHEMA AND tablename = TG_TABLE_NAME) THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END
$$;

DROP TRIGGER audit_events_append_only ON audit_events;
CREATE TRIGGER audit_events_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION tenantry_refuse_audit_change();
DROP TRIGGER audit_chain_append_only ON audit_chain;
CREATE TRIGGER audit_chain_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_chain
    FOR EACH STATEMENT EXECUTE FUNCTION tenantry_refuse_audit_change();

-- Removes `p_org`'s sealed positions up to `p_upto` and their records, and records the
-- checkpoint. `p_hash` must be the chain's hash at `p_upto` (the one the caller signed).
-- Returns how many records it removed.
CREATE FUNCTION tenantry_prune_audit(p_org uuid, p_upto bigint, p_hash text,
                                     p_at timestamptz, p_signature text) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    removed bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM audit_chain WHERE org_id = p_org AND seq = p_upto AND hash = p_hash) THEN
        RAISE EXCEPTION 'checkpoint % of % is not a sealed position with that hash', p_upto, p_org
            USING ERRCODE = 'check_violation';
    END IF;
    PERFORM set_config('tenantry.audit_prune', 'on', true);
    DELETE FROM audit_events e USING audit_chain c
        WHERE c.org_id = p_org AND c.seq <= p_upto AND e.org_id = c.org_id AND e.id = c.record_id;
    GET DIAGNOSTICS removed = ROW_COUNT;
    DELETE FROM audit_chain WHERE org_id = p_org AND seq <= p_upto;
    PERFORM set_config('tenantry.audit_prune', '', true);
    INSERT INTO audit_checkpoints (org_id, seq, hash, pruned_at, signature)
        VALUES (p_org, p_upto, p_hash, p_at, p_signature)
        ON CONFLICT (org_id) DO UPDATE
        SET seq = EXCLUDED.seq, hash = EXCLUDED.hash, pruned_at = EXCLUDED.pruned_at,
            signature = EXCLUDED.signature
        WHERE audit_checkpoints.seq < EXCLUDED.seq;
    RETURN removed;
END
$$;
REVOKE ALL ON FUNCTION tenantry_prune_audit(uuid, bigint, text, timestamptz, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenantry_prune_audit(uuid, bigint, text, timestamptz, text) TO tenantry_app;
