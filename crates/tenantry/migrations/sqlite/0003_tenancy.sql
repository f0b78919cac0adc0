-- Tenancy and RBAC (SQLite). Keep in step with ../postgres/0003_tenancy.sql.
-- A membership's role is a built-in key (owner, admin, member, billing, readonly) or
-- 'custom' with custom_role_id naming a role of the same organization (composite key).

CREATE TABLE roles (
    org_id       BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id           BLOB NOT NULL,
    name         TEXT NOT NULL COLLATE NOCASE,
    description  TEXT NOT NULL DEFAULT '',
    permissions  TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (org_id, id),
    CONSTRAINT roles_org_name_key UNIQUE (org_id, name)
);

CREATE TABLE memberships (
    org_id          BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id         BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role            TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'billing', 'readonly', 'custom')),
    custom_role_id  BLOB,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (org_id, user_id),
    FOREIGN KEY (org_id, custom_role_id) REFERENCES roles (org_id, id),
    CHECK ((role = 'custom') = (custom_role_id IS NOT NULL))
);
CREATE INDEX memberships_user ON memberships (user_id);

CREATE TABLE workspace_roles (
    org_id          BLOB NOT NULL,
    workspace_id    BLOB NOT NULL,
    user_id         BLOB NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'billing', 'readonly', 'custom')),
    custom_role_id  BLOB,
    created_at      TEXT NOT NULL,
    PRIMARY KEY (org_id, workspace_id, user_id),
    FOREIGN KEY (org_id, workspace_id) REFERENCES workspaces (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, user_id) REFERENCES memberships (org_id, user_id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, custom_role_id) REFERENCES roles (org_id, id),
    CHECK ((role = 'custom') = (custom_role_id IS NOT NULL))
);

CREATE TABLE invitations (
    org_id          BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id              BLOB NOT NULL,
    email           TEXT NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'billing', 'readonly', 'custom')),
    custom_role_id  BLOB,
    token_hash      TEXT NOT NULL,
    invited_by      BLOB,
    created_at      TEXT NOT NULL,
    expires_at      TEXT NOT NULL,
    accepted_at     TEXT,
    accepted_by     BLOB,
    revoked_at      TEXT,
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, custom_role_id) REFERENCES roles (org_id, id),
    CONSTRAINT invitations_token_key UNIQUE (token_hash),
    CHECK ((role = 'custom') = (custom_role_id IS NOT NULL))
);
CREATE INDEX invitations_org_email ON invitations (org_id, email);
