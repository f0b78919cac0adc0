//! The SCIM protocol over Users: filters, paging, attribute selection, error bodies,
//! media types, ETags and `If-Match`.

use reqwest::Method;
use serde_json::{json, Value};

use super::{assert_error, create_user, get, okta_user, scim, setup, PATCH, USER};
use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    scim_filters_paging_attributes_and_errors,
    scim_etags_and_if_match,
    scim_rate_limits_answer_in_scim_with_retry_after,
);

async fn scim_filters_paging_attributes_and_errors(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let (_owner, _org, token) = setup(&app, "acme").await;
    for (i, name) in ["u1", "u2", "u3", "u4"].iter().enumerate() {
        let mut body = okta_user(&format!("{name}@acme.example"));
        body["externalId"] = json!(format!("ext-{i}"));
        create_user(&app, &token, body).await;
    }
    let (_, page) = get(&app, &token, "/Users?startIndex=2&count=2").await;
    assert_eq!(page["totalResults"], 4);
    assert_eq!(page["itemsPerPage"], 2);
    assert_eq!(page["startIndex"], 2);
    assert_eq!(
        page["Resources"][0]["userName"], "u2@acme.example",
        "creation order"
    );
    let (_, page) = get(&app, &token, "/Users?count=5000").await;
    assert_eq!(page["itemsPerPage"], 4);
    let (_, page) = get(&app, &token, "/Users?count=0").await;
    assert_eq!(
        (page["totalResults"].clone(), page["itemsPerPage"].clone()),
        (json!(4), json!(0))
    );

    let (_, found) = get(
        &app,
        &token,
        "/Users?filter=userName+eq+%22u1%40acme.example%22+or+externalId+eq+%22ext-2%22",
    )
    .await;
    assert_eq!(found["totalResults"], 2);
    let (_, found) = get(
        &app,
        &token,
        "/Users?filter=userName+eq+%22u1%40acme.example%22+and+active+eq+true",
    )
    .await;
    assert_eq!(found["totalResults"], 1);

    let (_, only) = get(&app, &token, "/Users?attributes=userName&count=1").await;
    let item = only["Resources"][0].as_object().unwrap();
    let mut keys: Vec<&str> = item.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["id", "schemas", "userName"]);
    let (_, without) = get(
        &app,
        &token,
        "/Users?excludedAttributes=emails,name&count=1",
    )
    .await;
    let item = &without["Resources"][0];
    assert!(item.get("emails").is_none() && item.get("name").is_none() && item["id"].is_string());
    let id = item["id"].as_str().unwrap();
    let (_, one) = get(
        &app,
        &token,
        &format!("/Users/{id}?attributes=name.givenName"),
    )
    .await;
    assert_eq!(one["name"], json!({"givenName": "Ann"}));

    let (status, body) = get(&app, &token, "/Users?filter=userName+eq").await;
    assert_error(status, &body, 400, Some("invalidFilter"));
    let (status, body) = get(&app, &token, "/Users?startIndex=abc").await;
    assert_error(status, &body, 400, Some("invalidValue"));
    let (status, body) = get(
        &app,
        &token,
        "/Users/scimusr_00000000000000000000000000000000",
    )
    .await;
    assert_error(status, &body, 404, None);
    let (status, body) = get(&app, &token, "/Users/not-an-id").await;
    assert_error(status, &body, 404, None);

    let res = app
        .client
        .post(app.url("/scim/v2/Users"))
        .bearer_auth(&token)
        .header("content-type", "application/scim+json")
        .body("{\"userName\": ")
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    assert_error(status, &body, 400, Some("invalidSyntax"));
    let (status, _, body) = scim(
        &app,
        &token,
        Method::POST,
        "/Users",
        Some(json!({"schemas": [USER]})),
        &[],
    )
    .await;
    assert_error(status, &body, 400, Some("invalidValue"));
    let (status, _, body) = scim(
        &app,
        &token,
        Method::POST,
        "/Users",
        Some(okta_user("U1@acme.example")),
        &[],
    )
    .await;
    assert_error(status, &body, 409, Some("uniqueness"));
    let (status, _, body) = scim(
        &app,
        &token,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(json!({"schemas": [PATCH], "Operations": [{"op": "jump"}]})),
        &[],
    )
    .await;
    assert_error(status, &body, 400, Some("invalidSyntax"));
    // Plain JSON is accepted too.
    let res = app
        .client
        .post(app.url("/scim/v2/Users"))
        .bearer_auth(&token)
        .json(&okta_user("json@acme.example"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
}

async fn scim_etags_and_if_match(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let (_owner, _org, token) = setup(&app, "acme").await;
    let created = create_user(&app, &token, okta_user("ann@acme.example")).await;
    let id = created["id"].as_str().unwrap();
    let v1 = created["meta"]["version"].as_str().unwrap().to_owned();
    assert!(v1.starts_with("W/\""));
    let (_, headers, _) = scim(
        &app,
        &token,
        Method::GET,
        &format!("/Users/{id}"),
        None,
        &[],
    )
    .await;
    assert_eq!(headers["etag"].to_str().unwrap(), v1);

    let mut body = okta_user("ann@acme.example");
    body["displayName"] = json!("Ann 2");
    let (status, headers, put) = scim(
        &app,
        &token,
        Method::PUT,
        &format!("/Users/{id}"),
        Some(body.clone()),
        &[("if-match", &v1)],
    )
    .await;
    assert_eq!(status, 200, "{put}");
    let v2 = headers["etag"].to_str().unwrap().to_owned();
    assert_ne!(v1, v2);
    let (status, _, stale) = scim(
        &app,
        &token,
        Method::PUT,
        &format!("/Users/{id}"),
        Some(body),
        &[("if-match", &v1)],
    )
    .await;
    assert_error(status, &stale, 412, None);
    let ops = json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "displayName", "value": "x"}]});
    let (status, _, stale) = scim(
        &app,
        &token,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(ops.clone()),
        &[("if-match", &v1)],
    )
    .await;
    assert_error(status, &stale, 412, None);
    let (status, _, _) = scim(
        &app,
        &token,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(ops),
        &[("if-match", &v2)],
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, stale) = scim(
        &app,
        &token,
        Method::DELETE,
        &format!("/Users/{id}"),
        None,
        &[("if-match", &v2)],
    )
    .await;
    assert_error(status, &stale, 412, None);
}

/// Over the organization's limit, and over the per-address limit of the shared layer, a
/// SCIM client gets a SCIM error with `Retry-After`, so the identity provider backs off.
async fn scim_rate_limits_answer_in_scim_with_retry_after(backend: Backend) {
    let Some(app) = TestApp::on(backend)
        .with_vars(|v| {
            v.insert("ORG_RATE_LIMIT_ENTERPRISE".into(), "3".into());
        })
        .await
    else {
        return;
    };
    let (_owner, _org, token) = setup(&app, "acme").await;
    let mut limited = None;
    for _ in 0..10 {
        let (status, headers, body) = scim(&app, &token, Method::GET, "/Users", None, &[]).await;
        if status == 429 {
            limited = Some((headers, body));
            break;
        }
        assert_eq!(status, 200, "{body}");
    }
    let (headers, body) = limited.expect("the organization's limit answers 429");
    assert_error(429, &body, 429, None);
    assert!(headers.contains_key("retry-after"), "{headers:?}");
    assert!(headers.contains_key("ratelimit-limit"), "{headers:?}");

    let Some(app) = TestApp::on(backend)
        .with_vars(|v| {
            v.insert("IP_RATE_LIMIT".into(), "2".into());
        })
        .await
    else {
        return;
    };
    let mut last = None;
    for _ in 0..5 {
        let (status, headers, body) = scim(&app, "", Method::GET, "/Users", None, &[]).await;
        if status == 429 {
            last = Some((headers, body));
            break;
        }
        assert_error(status, &body, 401, None);
    }
    let (headers, body) = last.expect("the address limit answers 429");
    assert_error(429, &body, 429, None);
    assert!(headers.contains_key("retry-after"), "{headers:?}");
}
