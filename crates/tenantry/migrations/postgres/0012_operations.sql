-- Operations (issue 16). Keep in step with ../sqlite/0012_operations.sql.
--
-- A membership can be deactivated (SCIM `active=false`) without being removed: its role,
-- workspace roles and history stay, and it answers like no membership until reactivated.
-- Feature flags default per plan in code; the operator's per-organization overrides live here.

ALTER TABLE memberships ADD COLUMN deactivated_at timestamptz;

CREATE TABLE feature_overrides (
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    flag        text NOT NULL,
    enabled     boolean NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (org_id, flag)
);

ALTER TABLE feature_overrides ENABLE ROW LEVEL SECURITY;
ALTER TABLE feature_overrides FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON feature_overrides
    USING (org_id = tenantry_current_org() OR tenantry_is_system())
    WITH CHECK (org_id = tenantry_current_org() OR tenantry_is_system());
GRANT SELECT, INSERT, UPDATE, DELETE ON feature_overrides TO tenantry_app;
