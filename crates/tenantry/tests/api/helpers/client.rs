//! Sending requests to the test app.

use reqwest::Method;
use serde_json::Value;

use super::TestApp;

/// Sends `method path` as `token` (or anonymously) with an optional JSON body.
pub async fn call(
    app: &TestApp,
    token: Option<&str>,
    method: Method,
    path: impl AsRef<str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = app.client.request(method, app.url(path.as_ref()));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.unwrap()
}
