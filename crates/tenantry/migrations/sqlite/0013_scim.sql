-- SCIM 2.0 provisioning; see the PostgreSQL migration of the same name.

CREATE TABLE scim_tokens (
    org_id        BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id            BLOB NOT NULL,
    name          TEXT NOT NULL,
    prefix        TEXT NOT NULL,
    secret_hash   TEXT NOT NULL,
    created_by    BLOB,
    created_at    TEXT NOT NULL,
    expires_at    TEXT,
    last_used_at  TEXT,
    revoked_at    TEXT,
    PRIMARY KEY (org_id, id),
    CONSTRAINT scim_tokens_id_key UNIQUE (id),
    CONSTRAINT scim_tokens_prefix_key UNIQUE (prefix)
);

CREATE TABLE scim_users (
    org_id       BLOB NOT NULL,
    id           BLOB NOT NULL,
    user_id      BLOB NOT NULL,
    user_name    TEXT NOT NULL COLLATE NOCASE,
    external_id  TEXT,
    resource     TEXT NOT NULL,
    version      INTEGER NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (org_id, id),
    CONSTRAINT scim_users_user_name_key UNIQUE (org_id, user_name),
    CONSTRAINT scim_users_user_key UNIQUE (org_id, user_id),
    FOREIGN KEY (org_id, user_id) REFERENCES memberships (org_id, user_id) ON DELETE CASCADE
);

CREATE TABLE scim_groups (
    org_id        BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id            BLOB NOT NULL,
    display_name  TEXT NOT NULL COLLATE NOCASE,
    external_id   TEXT,
    version       INTEGER NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (org_id, id),
    CONSTRAINT scim_groups_display_name_key UNIQUE (org_id, display_name)
);

CREATE TABLE scim_group_members (
    org_id        BLOB NOT NULL,
    group_id      BLOB NOT NULL,
    scim_user_id  BLOB NOT NULL,
    PRIMARY KEY (org_id, group_id, scim_user_id),
    FOREIGN KEY (org_id, group_id) REFERENCES scim_groups (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, scim_user_id) REFERENCES scim_users (org_id, id) ON DELETE CASCADE
);
CREATE INDEX scim_group_members_user ON scim_group_members (org_id, scim_user_id);

CREATE TABLE scim_role_mappings (
    org_id          BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    group_name      TEXT NOT NULL COLLATE NOCASE,
    role            TEXT NOT NULL CHECK (role IN ('admin', 'member', 'billing', 'readonly', 'custom')),
    custom_role_id  BLOB,
    PRIMARY KEY (org_id, group_name),
    FOREIGN KEY (org_id, custom_role_id) REFERENCES roles (org_id, id) ON DELETE CASCADE,
    CHECK ((role = 'custom') = (custom_role_id IS NOT NULL))
);
