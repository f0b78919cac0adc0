-- SCIM 2.0 provisioning (PostgreSQL). Keep in step with ../sqlite/0013_scim.sql.
--
-- A SCIM token is per organization; only its public prefix and the SHA-256 of the whole
-- secret are stored. A provisioned user is a membership seen through SCIM: its id is
-- per organization (never the global user id), its attributes are kept as the SCIM
-- document the identity provider sent, and removing the membership removes it.
-- Groups exist for SCIM only; role mappings turn membership of a named group into a role.

CREATE TABLE scim_tokens (
    org_id        uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id            uuid NOT NULL,
    name          text NOT NULL,
    prefix        text NOT NULL,
    secret_hash   text NOT NULL,
    created_by    uuid,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz,
    last_used_at  timestamptz,
    revoked_at    timestamptz,
    PRIMARY KEY (org_id, id),
    CONSTRAINT scim_tokens_id_key UNIQUE (id),
    CONSTRAINT scim_tokens_prefix_key UNIQUE (prefix)
);

CREATE TABLE scim_users (
    org_id       uuid NOT NULL,
    id           uuid NOT NULL,
    user_id      uuid NOT NULL,
    user_name    citext NOT NULL,
    external_id  text,
    resource     text NOT NULL,
    version      bigint NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (org_id, id),
    CONSTRAINT scim_users_user_name_key UNIQUE (org_id, user_name),
    CONSTRAINT scim_users_user_key UNIQUE (org_id, user_id),
    FOREIGN KEY (org_id, user_id) REFERENCES memberships (org_id, user_id) ON DELETE CASCADE
);

CREATE TABLE scim_groups (
    org_id        uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id            uuid NOT NULL,
    display_name  citext NOT NULL,
    external_id   text,
    version       bigint NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (org_id, id),
    CONSTRAINT scim_groups_display_name_key UNIQUE (org_id, display_name)
);

CREATE TABLE scim_group_members (
    org_id        uuid NOT NULL,
    group_id      uuid NOT NULL,
    scim_user_id  uuid NOT NULL,
    PRIMARY KEY (org_id, group_id, scim_user_id),
    FOREIGN KEY (org_id, group_id) REFERENCES scim_groups (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, scim_user_id) REFERENCES scim_users (org_id, id) ON DELETE CASCADE
);
CREATE INDEX scim_group_members_user ON scim_group_members (org_id, scim_user_id);

CREATE TABLE scim_role_mappings (
    org_id          uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    group_name      citext NOT NULL,
    role            text NOT NULL CHECK (role IN ('admin', 'member', 'billing', 'readonly', 'custom')),
    custom_role_id  uuid,
    PRIMARY KEY (org_id, group_name),
    FOREIGN KEY (org_id, custom_role_id) REFERENCES roles (org_id, id) ON DELETE CASCADE,
    CHECK ((role = 'custom') = (custom_role_id IS NOT NULL))
);

ALTER TABLE scim_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE scim_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON scim_tokens
    USING (org_id = tenantry_current_org() OR tenantry_is_system())
    WITH CHECK (org_id = tenantry_current_org() OR tenantry_is_system());

ALTER TABLE scim_users ENABLE ROW LEVEL SECURITY;
ALTER TABLE scim_users FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON scim_users
    USING (org_id = tenantry_current_org() OR tenantry_is_system())
    WITH CHECK (org_id = tenantry_current_org() OR tenantry_is_system());

ALTER TABLE scim_groups ENABLE ROW LEVEL SECURITY;
ALTER TABLE scim_groups FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON scim_groups
    USING (org_id = tenantry_current_org() OR tenantry_is_system())
    WITH CHECK (org_id = tenantry_current_org() OR tenantry_is_system());

ALTER TABLE scim_group_members ENABLE ROW LEVEL SECURITY;
ALTER TABLE scim_group_members FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON scim_group_members
    USING (org_id = tenantry_current_org() OR tenantry_is_system())
    WITH CHECK (org_id = tenantry_current_org() OR tenantry_is_system());

ALTER TABLE scim_role_mappings ENABLE ROW LEVEL SECURITY;
ALTER TABLE scim_role_mappings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON scim_role_mappings
    USING (org_id = tenantry_current_org() OR tenantry_is_system())
    WITH CHECK (org_id = tenantry_current_org() OR tenantry_is_system());

GRANT SELECT, INSERT, UPDATE, DELETE
    ON scim_tokens, scim_users, scim_groups, scim_group_members, scim_role_mappings
    TO tenantry_app;
