-- Tenancy and RBAC (PostgreSQL). Keep in step with ../sqlite/0003_tenancy.sql.
--
-- A user-scoped transaction sets `tenantry.user_id`: it sees that user's memberships in
-- every organization (and those organizations), for "my organizations", and nothing else.

CREATE FUNCTION tenantry_current_user() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('tenantry.user_id', true), '')::uuid $$;

CREATE TABLE roles (
    org_id       uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id           uuid NOT NULL,
    name         citext NOT NULL,
    description  text NOT NULL DEFAULT '',
    permissions  text NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (org_id, id),
    CONSTRAINT roles_org_name_key UNIQUE (org_id, name)
);

CREATE TABLE memberships (
    org_id          uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role            text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'billing', 'readonly', 'custom')),
    custom_role_id  uuid,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (org_id, user_id),
    FOREIGN KEY (org_id, custom_role_id) REFERENCES roles (org_id, id),
    CHECK ((role = 'custom') = (custom_role_id IS NOT NULL))
);
CREATE INDEX memberships_user ON memberships (user_id);

CREATE TABLE workspace_roles (
    org_id          uuid NOT NULL,
    workspace_id    uuid NOT NULL,
    user_id         uuid NOT NULL,
    role            text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'billing', 'readonly', 'custom')),
    custom_role_id  uuid,
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (org_id, workspace_id, user_id),
    FOREIGN KEY (org_id, workspace_id) REFERENCES workspaces (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, user_id) REFERENCES memberships (org_id, user_id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, custom_role_id) REFERENCES roles (org_id, id),
    CHECK ((role = 'custom') = (custom_role_id IS NOT NULL))
);

CREATE TABLE invitations (
    org_id          uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id              uuid NOT NULL,
    email           text NOT NULL,
    role            text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'billing', 'readonly', 'custom')),
    custom_role_id  uuid,
    token_hash      text NOT NULL,
    invited_by      uuid,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    accepted_at     timestamptz,
    accepted_by     uuid,
    revoked_at      timestamptz,
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, custom_role_id) REFERENCES roles (org_id, id),
    CONSTRAINT invitations_token_key UNIQUE (token_hash),
    CHECK ((role = 'custom') = (custom_role_id IS NOT NULL))
);
CREATE INDEX invitations_org_email ON invitations (org_id, email);

ALTER TABLE roles ENABLE ROW LEVEL SECURITY;
ALTER TABLE roles FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON roles
    USING (org_id = tenantry_current_org() OR tenantry_is_system())
    WITH CHECK (org_id = tenantry_current_org() OR tenantry_is_system());

ALTER TABLE workspace_roles ENABLE ROW LEVEL SECURITY;
ALTER TABLE workspace_roles FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON workspace_roles
    USING (org_id = tenantry_current_org() OR tenantry_is_system())
    WITH CHECK (org_id = tenantry_current_org() OR tenantry_is_system());

ALTER TABLE invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE invitations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON invitations
    USING (org_id = tenantry_current_org() OR tenantry_is_system())
    WITH CHECK (org_id = tenantry_current_org() OR tenantry_is_system());

-- Memberships: the tenant's rows, or (read-only) the current user's own rows anywhere.
ALTER TABLE memberships ENABLE ROW LEVEL SECURITY;
ALTER TABLE memberships FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memberships
    USING (org_id = tenantry_current_org() OR tenantry_is_system())
    WITH CHECK (org_id = tenantry_current_org() OR tenantry_is_system());
CREATE POLICY own_memberships ON memberships FOR SELECT
    USING (user_id = tenantry_current_user());

-- Organizations: also readable by a user scope when the user is a member.
CREATE POLICY member_organizations ON organizations FOR SELECT
    USING (EXISTS (SELECT 1 FROM memberships m
                   WHERE m.org_id = organizations.id AND m.user_id = tenantry_current_user()));

GRANT SELECT, INSERT, UPDATE, DELETE ON roles, memberships, workspace_roles, invitations TO tenantry_app;
