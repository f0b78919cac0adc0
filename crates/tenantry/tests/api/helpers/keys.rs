//! API keys.

use serde_json::{json, Value};

use super::TestApp;

/// Creates a key in `org` as `token`; returns the response JSON (with `secret`).
pub async fn create_key(app: &TestApp, token: &str, org: &str, body: Value) -> Value {
    let res = app
        .as_(token)
        .post(format!("/v1/orgs/{org}/api-keys"), body)
        .await;
    assert_eq!(res.status(), 201, "create key");
    res.json().await
}

/// A key of `org` with `scopes`; returns its secret.
pub async fn key_with(app: &TestApp, token: &str, org: &str, scopes: &[&str]) -> String {
    create_key(
        app,
        token,
        org,
        json!({"name": "test key", "scopes": scopes}),
    )
    .await["secret"]
        .as_str()
        .unwrap()
        .to_owned()
}
