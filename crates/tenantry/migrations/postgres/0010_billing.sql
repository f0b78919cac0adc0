-- Billing: each organization's customer and subscription at the billing provider (Stripe),
-- the provider's webhook events (stored once by event id, applied by the `stripe.event`
-- job), and the usage already reported to the provider.

-- One row per organization that has a customer at the provider. The subscription columns
-- mirror the provider's subscription as last read from it (`synced_at`): an older read
-- never overwrites a newer one.
CREATE TABLE billing_accounts (
    org_id                uuid PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
    customer_id           text NOT NULL,
    subscription_id       text,
    subscription_status   text,
    subscription_created  timestamptz,
    price_id              text,
    current_period_start  timestamptz,
    current_period_end    timestamptz,
    cancel_at_period_end  boolean NOT NULL DEFAULT false,
    past_due_since        timestamptz,
    synced_at             timestamptz,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL,
    CONSTRAINT billing_accounts_customer_key UNIQUE (customer_id)
);

-- Webhook events as received (the verified raw body), deduplicated by the provider's id.
-- Platform data: no tenant reads it; `org_id` names the organization it applied to.
-- Processed events are deleted after 30 days (Stripe retries a delivery for 3 days).
CREATE TABLE billing_events (
    id            text PRIMARY KEY,
    event_type    text NOT NULL,
    created       timestamptz NOT NULL,
    payload       text NOT NULL,
    received_at   timestamptz NOT NULL,
    processed_at  timestamptz,
    org_id        uuid,
    outcome       text
);
CREATE INDEX billing_events_processed ON billing_events (processed_at);

-- Usage reported to the provider: one row per organization, meter and completed day, whose
-- `identifier` the provider deduplicates, so a retry never reports a day twice.
CREATE TABLE billing_usage_reports (
    org_id       uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    meter        text NOT NULL,
    day          text NOT NULL,
    quantity     bigint NOT NULL,
    identifier   text NOT NULL,
    reported_at  timestamptz NOT NULL,
    PRIMARY KEY (org_id, meter, day)
);

ALTER TABLE billing_accounts ENABLE ROW LEVEL SECURITY;
ALTER TABLE billing_accounts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON billing_accounts
    USING (org_id = tenantry_current_org() OR tenantry_is_system())
    WITH CHECK (org_id = tenantry_current_org() OR tenantry_is_system());

ALTER TABLE billing_usage_reports ENABLE ROW LEVEL SECURITY;
ALTER TABLE billing_usage_reports FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON billing_usage_reports
    USING (org_id = tenantry_current_org() OR tenantry_is_system())
    WITH CHECK (org_id = tenantry_current_org() OR tenantry_is_system());

GRANT SELECT, INSERT, UPDATE, DELETE ON billing_accounts, billing_usage_reports TO tenantry_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON billing_events TO tenantry_app;
