-- API keys, the example tenant resource, usage metering (PostgreSQL).
-- Keep in step with ../sqlite/0006_keys_usage.sql.

-- The secret `<prefix>_<random>` is shown once; only the prefix (public, the lookup key) and
-- the SHA-256 of the whole secret are stored. A rotation keeps the prefix and id, stores the
-- new secret's hash, and keeps the previous hash valid until `previous_expires_at`.
CREATE TABLE api_keys (
    org_id               uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id                   uuid NOT NULL,
    name                 text NOT NULL,
    prefix               text NOT NULL,
    secret_hash          text NOT NULL,
    previous_hash        text,
    previous_expires_at  timestamptz,
    scopes               text NOT NULL,
    rate_limit           integer,
    rate_window_sec      integer,
    created_by           uuid,
    created_at           timestamptz NOT NULL,
    expires_at           timestamptz,
    last_used_at         timestamptz,
    revoked_at           timestamptz,
    PRIMARY KEY (org_id, id),
    CONSTRAINT api_keys_id_key UNIQUE (id),
    CONSTRAINT api_keys_prefix_key UNIQUE (prefix),
    CHECK ((rate_limit IS NULL) = (rate_window_sec IS NULL))
);

-- The example resource a SaaS builder copies for their own: tenant-owned, metered.
CREATE TABLE data_items (
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id          uuid NOT NULL,
    name        text NOT NULL,
    value       text NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (org_id, id)
);

-- Usage events: what customers send (one row per event, deduplicated by key) and what the
-- service meters itself (one row per organization, meter and flush). `day` is the UTC day
-- of `occurred_at`; `rolled_up` marks rows already added to usage_daily.
CREATE TABLE usage_events (
    org_id           uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id               uuid NOT NULL,
    meter            text NOT NULL,
    quantity         bigint NOT NULL CHECK (quantity >= 0),
    occurred_at      timestamptz NOT NULL,
    day              text NOT NULL,
    idempotency_key  text NOT NULL,
    rolled_up        boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL,
    PRIMARY KEY (org_id, id),
    CONSTRAINT usage_events_idempotency_key UNIQUE (org_id, idempotency_key)
);
CREATE INDEX usage_events_pending ON usage_events (org_id, day) WHERE NOT rolled_up;
CREATE INDEX usage_events_rolled ON usage_events (created_at) WHERE rolled_up;

CREATE TABLE usage_daily (
    org_id    uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    meter     text NOT NULL,
    day       text NOT NULL,
    quantity  bigint NOT NULL,
    PRIMARY KEY (org_id, meter, day)
);

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys
    USING (org_id = tenantry_current_org() OR tenantry_is_system())
    WITH CHECK (org_id = tenantry_current_org() OR tenantry_is_system());

ALTER TABLE data_items ENABLE ROW LEVEL SECURITY;
ALTER TABLE data_items FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON data_items
    USING (org_id = tenantry_current_org() OR tenantry_is_system())
    WITH CHECK (org_id = tenantry_current_org() OR tenantry_is_system());

ALTER TABLE usage_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON usage_events
    USING (org_id = tenantry_current_org() OR tenantry_is_system())
    WITH CHECK (org_id = tenantry_current_org() OR tenantry_is_system());

ALTER TABLE usage_daily ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_daily FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON usage_daily
    USING (org_id = tenantry_current_org() OR tenantry_is_system())
    WITH CHECK (org_id = tenantry_current_org() OR tenantry_is_system());

GRANT SELECT, INSERT, UPDATE, DELETE ON api_keys, data_items, usage_events, usage_daily TO tenantry_app;
