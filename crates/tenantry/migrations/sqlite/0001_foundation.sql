-- Foundation schema (SQLite). Keep in step with ../postgres/0001_foundation.sql.
-- UUIDs are stored as 16-byte BLOBs, timestamps as RFC 3339 TEXT bound from Rust.

CREATE TABLE organizations (
    id          BLOB PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    slug        TEXT NOT NULL COLLATE NOCASE,
    plan        TEXT NOT NULL DEFAULT 'free' CHECK (plan IN ('free', 'pro', 'enterprise')),
    status      TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    CONSTRAINT organizations_slug_key UNIQUE (slug)
);

-- Tenant tables lead with org_id; rows reference each other by (org_id, id).
CREATE TABLE workspaces (
    org_id      BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id          BLOB NOT NULL,
    name        TEXT NOT NULL,
    slug        TEXT NOT NULL COLLATE NOCASE,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (org_id, id),
    CONSTRAINT workspaces_org_slug_key UNIQUE (org_id, slug)
);

-- The head of each organization's audit hash chain; updating it serializes appends.
CREATE TABLE audit_heads (
    org_id  BLOB PRIMARY KEY NOT NULL,
    seq     INTEGER NOT NULL,
    hash    TEXT NOT NULL
);

-- Append-only: no foreign key to organizations, so the record of a deleted tenant stays.
CREATE TABLE audit_events (
    org_id       BLOB NOT NULL,
    seq          INTEGER NOT NULL,
    id           BLOB NOT NULL,
    actor_type   TEXT NOT NULL,
    actor_id     TEXT,
    action       TEXT NOT NULL,
    target_type  TEXT,
    target_id    TEXT,
    metadata     TEXT NOT NULL,
    ip           TEXT,
    user_agent   TEXT,
    request_id   TEXT,
    created_at   TEXT NOT NULL,
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL,
    PRIMARY KEY (org_id, seq),
    CONSTRAINT audit_events_id_key UNIQUE (id)
);
CREATE INDEX audit_events_org_action ON audit_events (org_id, action, seq);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;

CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
