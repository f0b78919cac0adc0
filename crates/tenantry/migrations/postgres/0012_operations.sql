-- Operations (issue 16). Keep in step with ../sqlite/0012_operations.sql.
--
-- A membership can be deactivated (SCIM `active=false`) without being removed: its role,
-- workspace roles and history stay, and it answers like no membership until reactivated.
-- Feature flags default per plan in code; the operator's overrides of one organization are
-- a JSON object of flag name to true or false on the organization's row, so every read
-- that authorizes a request (which joins the organization for its plan and status) has
-- them without another query.

ALTER TABLE memberships ADD COLUMN deactivated_at timestamptz;
ALTER TABLE organizations ADD COLUMN feature_overrides text NOT NULL DEFAULT '{}';
