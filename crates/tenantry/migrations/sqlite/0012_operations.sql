-- Operations (issue 16); see the PostgreSQL migration of the same name.

ALTER TABLE memberships ADD COLUMN deactivated_at TEXT;

CREATE TABLE feature_overrides (
    org_id      BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    flag        TEXT NOT NULL,
    enabled     INTEGER NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (org_id, flag)
);
