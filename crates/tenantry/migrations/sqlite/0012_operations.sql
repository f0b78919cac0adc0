-- Operations (issue 16); see the PostgreSQL migration of the same name.

ALTER TABLE memberships ADD COLUMN deactivated_at TEXT;
ALTER TABLE organizations ADD COLUMN feature_overrides TEXT NOT NULL DEFAULT '{}';
