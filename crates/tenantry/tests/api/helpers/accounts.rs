//! Accounts registered over HTTP, for tests whose subject is registration or its tokens
//! (set-up goes through [`super::TestApp::user`]).

use serde_json::{json, Value};

use super::TestApp;

/// The password of every test account.
pub const PASSWORD: &str = "correct horse battery";

/// Registers `email` over HTTP; returns the token response.
pub async fn register(app: &TestApp, email: &str) -> Value {
    let res = app
        .client
        .post(app.url("/v1/auth/register"))
        .json(&json!({"email": email, "password": PASSWORD, "name": "Ann"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}
