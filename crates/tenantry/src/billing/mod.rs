//! Billing: a provider interface with a Stripe implementation. Stripe is the source of
//! truth for paid subscriptions; Tenantry mirrors each organization's subscription and
//! derives its plan from it. Without a provider, plans change by hand.
//!
//! - Checkout and the Customer Portal are sessions created at the provider
//!   ([`BillingProvider`]).
//! - Webhooks are verified ([`signature`]), stored once by event id and applied by the
//!   `stripe.event` job ([`jobs`]), which re-reads the subscription from the provider so
//!   events arriving late, twice or out of order converge on the provider's current state.
//! - The periodic `billing.sync` job reports completed days of metered usage and ends
//!   expired grace periods.

pub mod jobs;
pub mod model;
pub mod signature;
pub mod stripe;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::{BillingConfig, StripeConfig};
use crate::ids::OrgId;
use crate::rbac::Plan;
pub use model::Subscription;

/// Why a call to the billing provider failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider could not be reached or answered 5xx/429: try again later.
    #[error("billing provider unavailable: {0}")]
    Unavailable(String),
    /// The provider refused the request (4xx): retrying the same request will not help.
    #[error("billing provider refused the request ({status}): {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The provider's error code, when it gave one.
        code: Option<String>,
        /// The provider's message.
        message: String,
    },
    /// The provider answered something this client cannot read.
    #[error("unexpected answer from the billing provider: {0}")]
    Unexpected(String),
}

/// A hosted session (Checkout or Customer Portal) to send the customer to.
#[derive(Clone, Debug)]
pub struct HostedSession {
    /// The provider's id.
    pub id: String,
    /// Where to send the customer.
    pub url: String,
}

/// What a Checkout session needs.
#[derive(Clone, Debug)]
pub struct CheckoutRequest<'a> {
    /// The organization buying.
    pub org_id: OrgId,
    /// Its customer at the provider.
    pub customer_id: &'a str,
    /// The price of the plan bought.
    pub price_id: &'a str,
    /// Return URL after payment.
    pub success_url: &'a str,
    /// Return URL when abandoned.
    pub cancel_url: &'a str,
    /// Makes a retried request return the same session.
    pub idempotency_key: &'a str,
}

/// One report of metered usage.
#[derive(Clone, Debug)]
pub struct MeterEvent<'a> {
    /// The meter's event name.
    pub event_name: &'a str,
    /// Customer billed.
    pub customer_id: &'a str,
    /// Quantity.
    pub value: i64,
    /// Unique per organization, meter and day: the provider counts it once.
    pub identifier: &'a str,
    /// When the usage happened.
    pub timestamp: DateTime<Utc>,
}

/// A billing provider (Stripe; a test double in benchmarks).
#[async_trait::async_trait]
pub trait BillingProvider: Send + Sync {
    /// Creates the organization's customer; the same `idempotency_key` returns the same one.
    async fn create_customer(
        &self,
        org_id: OrgId,
        name: &str,
        idempotency_key: &str,
    ) -> Result<String, ProviderError>;
    /// A subscription-mode Checkout session.
    async fn create_checkout_session(
        &self,
        request: CheckoutRequest<'_>,
    ) -> Result<HostedSession, ProviderError>;
    /// A Customer Portal session.
    async fn create_portal_session(
        &self,
        customer_id: &str,
        return_url: &str,
        idempotency_key: &str,
    ) -> Result<HostedSession, ProviderError>;
    /// The subscription as it is now.
    async fn get_subscription(&self, id: &str) -> Result<Subscription, ProviderError>;
    /// The customer's subscriptions, in any status (the most recent 100).
    async fn customer_subscriptions(
        &self,
        customer_id: &str,
    ) -> Result<Vec<Subscription>, ProviderError>;
    /// Reports metered usage.
    async fn report_usage(&self, event: MeterEvent<'_>) -> Result<(), ProviderError>;
}

/// Billing as configured: the Stripe settings, the client (when a secret key is set) and
/// the plan rules.
pub struct Billing {
    /// Stripe settings.
    pub stripe: StripeConfig,
    provider: Option<Arc<dyn BillingProvider>>,
    /// How long `past_due` keeps the plan.
    pub past_due_grace: Duration,
}

impl Billing {
    /// Billing from the configuration: `None` when no `STRIPE_*` variable is set.
    pub fn from_config(config: &BillingConfig) -> anyhow::Result<Option<Arc<Self>>> {
        let Some(stripe) = &config.stripe else {
            return Ok(None);
        };
        let provider: Option<Arc<dyn BillingProvider>> = match &stripe.secret_key {
            Some(key) => Some(Arc::new(stripe::StripeClient::new(
                &stripe.api_base,
                key.clone(),
            )?)),
            None => None,
        };
        Ok(Some(Arc::new(Self {
            stripe: stripe.clone(),
            provider,
            past_due_grace: config.past_due_grace,
        })))
    }

    /// Billing over any provider (benchmarks and tests of the rules).
    pub fn with_provider(
        stripe: StripeConfig,
        provider: Arc<dyn BillingProvider>,
        past_due_grace: Duration,
    ) -> Self {
        Self {
            stripe,
            provider: Some(provider),
            past_due_grace,
        }
    }

    /// The provider client, when a secret key is configured.
    pub fn provider(&self) -> Option<&dyn BillingProvider> {
        self.provider.as_deref()
    }

    /// The plan a price buys.
    pub fn plan_of_price(&self, price: &str) -> Option<Plan> {
        if self.stripe.price_pro.as_deref() == Some(price) {
            Some(Plan::Pro)
        } else if self.stripe.price_enterprise.as_deref() == Some(price) {
            Some(Plan::Enterprise)
        } else {
            None
        }
    }

    /// The price of a plan, when it is sold.
    pub fn price_of_plan(&self, plan: Plan) -> Option<&str> {
        match plan {
            Plan::Free => None,
            Plan::Pro => self.stripe.price_pro.as_deref(),
            Plan::Enterprise => self.stripe.price_enterprise.as_deref(),
        }
    }

    /// Whether `url`, a hosted page the provider returned, is one to send a customer to:
    /// `https` on `stripe.com`, or on the configured API's own host (a local Stripe in
    /// tests). Anything else is refused rather than followed.
    pub fn is_hosted_page(&self, url: &str) -> bool {
        let Ok(url) = url::Url::parse(url) else {
            return false;
        };
        let host = url.host_str().unwrap_or("");
        let stripe =
            url.scheme() == "https" && (host == "stripe.com" || host.ends_with(".stripe.com"));
        let api = url::Url::parse(&self.stripe.api_base).ok();
        let same_as_api = api.is_some_and(|api| {
            api.scheme() == url.scheme() && api.host_str() == Some(host) && api.port() == url.port()
        });
        stripe || same_as_api
    }

    /// A configured return URL for `org`.
    pub fn url_for(template: &str, org: OrgId) -> String {
        template.replace("{ORG_ID}", &org.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn billing(api_base: &str) -> Arc<Billing> {
        let stripe = StripeConfig {
            secret_key: None,
            webhook_secrets: Vec::new(),
            price_pro: Some("price_pro".into()),
            price_enterprise: None,
            success_url: String::new(),
            cancel_url: String::new(),
            portal_return_url: String::new(),
            webhook_tolerance: Duration::from_secs(300),
            api_base: api_base.into(),
            meter_event_name: "api_calls".into(),
        };
        let config = BillingConfig {
            stripe: Some(stripe),
            past_due_grace: Duration::from_secs(0),
        };
        Billing::from_config(&config).unwrap().unwrap()
    }

    #[test]
    fn only_stripe_pages_are_followed() {
        let real = billing("https://api.stripe.com");
        assert!(real.is_hosted_page("https://checkout.stripe.com/c/pay/cs_test_a1"));
        assert!(real.is_hosted_page("https://billing.stripe.com/p/session/x"));
        for bad in [
            "http://checkout.stripe.com/c/pay/x",
            "https://checkout.stripe.com.evil.example/x",
            "https://evilstripe.com/x",
            "javascript:alert(1)",
            "/relative",
        ] {
            assert!(!real.is_hosted_page(bad), "{bad}");
        }
        let local = billing("http://127.0.0.1:4242");
        assert!(local.is_hosted_page("http://127.0.0.1:4242/checkout/cs_1"));
        assert!(!local.is_hosted_page("http://127.0.0.1:4243/checkout/cs_1"));
        assert_eq!(real.plan_of_price("price_pro"), Some(Plan::Pro));
        assert_eq!(real.plan_of_price("price_other"), None);
    }
}
