//! Accounts and organizations set up over HTTP: registration, organizations, members.

use reqwest::Method;
use serde_json::{json, Value};

use super::client::call;
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

/// Registers `email` and returns an access token.
pub async fn user(app: &TestApp, email: &str) -> String {
    register(app, email).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Creates an organization owned by `token`'s user; returns its id.
pub async fn org(app: &TestApp, token: &str, slug: &str) -> String {
    let res = call(
        app,
        Some(token),
        Method::POST,
        "/v1/orgs",
        Some(json!({"name": slug, "slug": slug})),
    )
    .await;
    assert_eq!(res.status(), 201);
    res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Invites `email` as `role` into `org` and has them join; returns their token.
pub async fn member(app: &TestApp, owner: &str, org: &str, email: &str, role: &str) -> String {
    let res = call(
        app,
        Some(owner),
        Method::POST,
        &format!("/v1/orgs/{org}/invitations"),
        Some(json!({"email": email, "role": role})),
    )
    .await;
    assert_eq!(res.status(), 201, "invite {email}");
    let invite: Value = res.json().await.unwrap();
    let token = user(app, email).await;
    let res = call(
        app,
        Some(&token),
        Method::POST,
        "/v1/invitations/accept",
        Some(json!({"token": invite["token"]})),
    )
    .await;
    assert_eq!(res.status(), 200, "accept {email}");
    token
}
