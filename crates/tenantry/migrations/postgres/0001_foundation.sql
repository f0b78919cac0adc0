-- Foundation schema (PostgreSQL). Keep in step with ../sqlite/0001_foundation.sql.
--
-- Isolation: every tenant table has row-level security ENABLEd and FORCEd, with one
-- policy keyed on the transaction-local setting `tenantry.org_id` (set with
-- set_config(..., true) by the service). Unset means no rows: fail-closed. Operator and
-- system work sets `tenantry.system` explicitly instead.
--
-- The service runs as role tenantry_app: not the owner, not a superuser, so the policies
-- apply to it.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tenantry_app') THEN
        CREATE ROLE tenantry_app NOLOGIN NOSUPERUSER NOBYPASSRLS;
    END IF;
EXCEPTION
    -- Another database of the same cluster created it concurrently.
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

CREATE FUNCTION tenantry_current_org() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('tenantry.org_id', true), '')::uuid $$;

CREATE FUNCTION tenantry_is_system() RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT coalesce(current_setting('tenantry.system', true), '') = 'on' $$;

CREATE EXTENSION IF NOT EXISTS citext;

CREATE TABLE organizations (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    slug        citext NOT NULL,
    plan        text NOT NULL DEFAULT 'free' CHECK (plan IN ('free', 'pro', 'enterprise')),
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    CONSTRAINT organizations_slug_key UNIQUE (slug)
);

CREATE TABLE workspaces (
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id          uuid NOT NULL,
    name        text NOT NULL,
    slug        citext NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (org_id, id),
    CONSTRAINT workspaces_org_slug_key UNIQUE (org_id, slug)
);

CREATE TABLE audit_heads (
    org_id  uuid PRIMARY KEY,
    seq     bigint NOT NULL,
    hash    text NOT NULL
);

CREATE TABLE audit_events (
    org_id       uuid NOT NULL,
    seq          bigint NOT NULL,
    id           uuid NOT NULL,
    actor_type   text NOT NULL,
    actor_id     text,
    action       text NOT NULL,
    target_type  text,
    target_id    text,
    metadata     text NOT NULL,
    ip           text,
    user_agent   text,
    request_id   text,
    created_at   timestamptz NOT NULL,
    prev_hash    text NOT NULL,
    hash         text NOT NULL,
    PRIMARY KEY (org_id, seq),
    CONSTRAINT audit_events_id_key UNIQUE (id)
);
CREATE INDEX audit_events_org_action ON audit_events (org_id, action, seq);

CREATE FUNCTION tenantry_refuse_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_events_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION tenantry_refuse_change();

-- Row-level security, ENABLEd and FORCEd (so even the owner is filtered).
ALTER TABLE organizations ENABLE ROW LEVEL SECURITY;
ALTER TABLE organizations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON organizations
    USING (id = tenantry_current_org() OR tenantry_is_system())
    WITH CHECK (id = tenantry_current_org() OR tenantry_is_system());

ALTER TABLE workspaces ENABLE ROW LEVEL SECURITY;
ALTER TABLE workspaces FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON workspaces
    USING (org_id = tenantry_current_org() OR tenantry_is_system())
    WITH CHECK (org_id = tenantry_current_org() OR tenantry_is_system());

ALTER TABLE audit_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_heads FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_heads
    USING (org_id = tenantry_current_org() OR tenantry_is_system())
    WITH CHECK (org_id = tenantry_current_org() OR tenantry_is_system());

ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_events
    USING (org_id = tenantry_current_org() OR tenantry_is_system())
    WITH CHECK (org_id = tenantry_current_org() OR tenantry_is_system());

-- The service role: data rights only; audit_events is insert and read, never change.
GRANT USAGE ON SCHEMA public TO tenantry_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON organizations, workspaces, audit_heads TO tenantry_app;
GRANT SELECT, INSERT ON audit_events TO tenantry_app;
