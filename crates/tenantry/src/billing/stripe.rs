//! Stripe over its REST API: form-encoded requests, `Idempotency-Key` on every create,
//! the API version pinned, the base URL configurable (a local fake in tests).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{BillingProvider, CheckoutRequest, HostedSession, MeterEvent, ProviderError};
use crate::billing::Subscription;
use crate::ids::OrgId;
use crate::secrets::Secret;

/// The API version every request names, so Stripe's answers keep the shapes read here
/// whatever the account's default version is.
pub const STRIPE_VERSION: &str = "2024-06-20";

/// A Stripe API client.
pub struct StripeClient {
    http: reqwest::Client,
    base: String,
    key: Secret,
}

type Form = Vec<(String, String)>;

fn pair(key: &str, value: impl Into<String>) -> (String, String) {
    (key.to_owned(), value.into())
}

impl StripeClient {
    /// A client for the API at `base` (`https://api.stripe.com`).
    pub fn new(base: &str, key: Secret) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(20))
            .user_agent(concat!("tenantry/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            key,
        })
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, ProviderError> {
        let response = request
            .bearer_auth(self.key.expose())
            .header("Stripe-Version", STRIPE_VERSION)
            .send()
            .await
            .map_err(|e| ProviderError::Unavailable(crate::telemetry::error_chain(&e)))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| ProviderError::Unavailable(crate::telemetry::error_chain(&e)))?;
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(ProviderError::Unavailable(format!("HTTP {status}")));
        }
        let json: Value = serde_json::from_str(&body)
            .map_err(|e| ProviderError::Unexpected(format!("HTTP {status}, not JSON: {e}")))?;
        if !status.is_success() {
            let error = &json["error"];
            return Err(ProviderError::Rejected {
                status: status.as_u16(),
                code: error["code"].as_str().map(str::to_owned),
                message: error["message"].as_str().unwrap_or("no message").to_owned(),
            });
        }
        Ok(json)
    }

    async fn post(
        &self,
        path: &str,
        idempotency_key: &str,
        form: &Form,
    ) -> Result<Value, ProviderError> {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Idempotency-Key", idempotency_key)
            .form(form);
        self.send(request).await
    }
}

fn string(value: &Value, field: &str) -> Result<String, ProviderError> {
    value[field]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ProviderError::Unexpected(format!("no `{field}` in the answer")))
}

fn time(value: &Value) -> Option<DateTime<Utc>> {
    value.as_i64().and_then(|t| DateTime::from_timestamp(t, 0))
}

/// A Stripe id that may come expanded (`{"id": …}`) or as a plain string.
pub fn id_of(value: &Value) -> Option<&str> {
    value.as_str().or_else(|| value["id"].as_str())
}

/// Reads a Stripe subscription object. The current period is read from the subscription
/// (API versions up to 2025-03) or from its first item (later versions).
pub fn parse_subscription(value: &Value) -> Result<Subscription, ProviderError> {
    let item = &value["items"]["data"][0];
    let period = |field: &str| time(&value[field]).or_else(|| time(&item[field]));
    Ok(Subscription {
        id: string(value, "id")?,
        customer_id: id_of(&value["customer"])
            .map(str::to_owned)
            .ok_or_else(|| ProviderError::Unexpected("no `customer` in the subscription".into()))?,
        status: string(value, "status")?,
        price_id: id_of(&item["price"]).map(str::to_owned),
        created: time(&value["created"])
            .ok_or_else(|| ProviderError::Unexpected("no `created` in the subscription".into()))?,
        current_period_start: period("current_period_start"),
        current_period_end: period("current_period_end"),
        cancel_at_period_end: value["cancel_at_period_end"].as_bool().unwrap_or(false),
    })
}

#[async_trait::async_trait]
impl BillingProvider for StripeClient {
    async fn create_customer(
        &self,
        org_id: OrgId,
        name: &str,
        idempotency_key: &str,
    ) -> Result<String, ProviderError> {
        let form = vec![
            pair("name", name),
            pair("metadata[org_id]", org_id.to_string()),
        ];
        let customer = self.post("/v1/customers", idempotency_key, &form).await?;
        string(&customer, "id")
    }

    async fn create_checkout_session(
        &self,
        request: CheckoutRequest<'_>,
    ) -> Result<HostedSession, ProviderError> {
        let org = request.org_id.to_string();
        let form = vec![
            pair("mode", "subscription"),
            pair("customer", request.customer_id),
            pair("client_reference_id", org.clone()),
            pair("line_items[0][price]", request.price_id),
            pair("line_items[0][quantity]", "1"),
            pair("success_url", request.success_url),
            pair("cancel_url", request.cancel_url),
            pair("metadata[org_id]", org.clone()),
            pair("subscription_data[metadata][org_id]", org),
        ];
        let session = self
            .post("/v1/checkout/sessions", request.idempotency_key, &form)
            .await?;
        Ok(HostedSession {
            id: string(&session, "id")?,
            url: string(&session, "url")?,
        })
    }

    async fn create_portal_session(
        &self,
        customer_id: &str,
        return_url: &str,
        idempotency_key: &str,
    ) -> Result<HostedSession, ProviderError> {
        let form = vec![
            pair("customer", customer_id),
            pair("return_url", return_url),
        ];
        let session = self
            .post("/v1/billing_portal/sessions", idempotency_key, &form)
            .await?;
        Ok(HostedSession {
            id: string(&session, "id")?,
            url: string(&session, "url")?,
        })
    }

    async fn get_subscription(&self, id: &str) -> Result<Subscription, ProviderError> {
        if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(ProviderError::Unexpected(format!(
                "`{id}` is not a subscription id"
            )));
        }
        let request = self
            .http
            .get(format!("{}/v1/subscriptions/{id}", self.base));
        parse_subscription(&self.send(request).await?)
    }

    async fn customer_subscriptions(
        &self,
        customer_id: &str,
    ) -> Result<Vec<Subscription>, ProviderError> {
        let request = self
            .http
            .get(format!("{}/v1/subscriptions", self.base))
            .query(&[
                ("customer", customer_id),
                ("status", "all"),
                ("limit", "100"),
            ]);
        let list = self.send(request).await?;
        list["data"]
            .as_array()
            .ok_or_else(|| ProviderError::Unexpected("no `data` in the subscription list".into()))?
            .iter()
            .map(parse_subscription)
            .collect()
    }

    async fn report_usage(&self, event: MeterEvent<'_>) -> Result<(), ProviderError> {
        let form = vec![
            pair("event_name", event.event_name),
            pair("payload[stripe_customer_id]", event.customer_id),
            pair("payload[value]", event.value.to_string()),
            pair("identifier", event.identifier),
            pair("timestamp", event.timestamp.timestamp().to_string()),
        ];
        self.post("/v1/billing/meter_events", event.identifier, &form)
            .await
            .map(|_| ())
    }
}
