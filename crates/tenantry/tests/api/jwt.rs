//! The JWT attack set, and key rotation.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tenantry::auth::jwt::{encoding_key, public_key};

use crate::helpers::{assert_problem, Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(forged_tokens_are_all_401, rotated_keys_keep_verifying);

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

async fn status_with(app: &TestApp, token: &str) -> reqwest::Response {
    app.client
        .get(app.url("/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn forged_tokens_are_all_401(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let ann = app.user("ann@example.com").await;
    let sub = ann.id.to_string();
    let secret = app.vars["JWT_SIGNING_SECRET"].clone();
    let jwks: Value = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(
        (
            key["kty"].as_str(),
            key["crv"].as_str(),
            key["alg"].as_str()
        ),
        (Some("OKP"), Some("Ed25519"), Some("EdDSA"))
    );
    let kid = key["kid"].as_str().unwrap().to_owned();
    let now = chrono::Utc::now().timestamp();
    let claims = |over: Value| {
        let mut c = json!({"iss": "tenantry", "aud": "tenantry-api", "sub": sub, "exp": now + 600,
                           "iat": now, "nbf": now, "jti": "t", "sid": "f"});
        for (k, v) in over.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let sign_typed = |kid: &str, c: &Value, typ: &str| {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_owned());
        header.typ = Some(typ.to_owned());
        jsonwebtoken::encode(&header, c, &encoding_key(&secret, kid)).unwrap()
    };
    let sign = |kid: &str, c: &Value| sign_typed(kid, c, "at+jwt");

    // The forging kit makes valid tokens, so each refusal below is the attack's doing.
    assert_eq!(
        status_with(&app, &sign(&kid, &claims(json!({}))))
            .await
            .status(),
        200
    );
    assert_eq!(status_with(&app, &ann.token).await.status(), 200);

    let mut forged: Vec<(&str, String)> = Vec::new();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({"alg": alg, "typ": "JWT", "kid": kid});
        forged.push((
            "alg none",
            format!("{}.{}.", b64(&header), b64(&claims(json!({})))),
        ));
    }
    let public = URL_SAFE_NO_PAD.decode(key["x"].as_str().unwrap()).unwrap();
    for secret_bytes in [
        public.clone(),
        key["x"].as_str().unwrap().as_bytes().to_vec(),
    ] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.clone());
        let token = jsonwebtoken::encode(
            &header,
            &claims(json!({})),
            &EncodingKey::from_secret(&secret_bytes),
        )
        .unwrap();
        forged.push(("HS256 with the public key", token));
    }
    forged.push(("unknown kid", sign("not-a-kid", &claims(json!({})))));
    forged.push(("no kid", {
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some("at+jwt".to_owned());
        jsonwebtoken::encode(&header, &claims(json!({})), &encoding_key(&secret, &kid)).unwrap()
    }));
    forged.push((
        "expired",
        sign(
            &kid,
            &claims(json!({"exp": now - 60, "iat": now - 700, "nbf": now - 700})),
        ),
    ));
    forged.push((
        "not yet valid",
        sign(&kid, &claims(json!({"nbf": now + 120}))),
    ));
    forged.push((
        "wrong aud",
        sign(&kid, &claims(json!({"aud": "someone-else"}))),
    ));
    forged.push(("wrong iss", sign(&kid, &claims(json!({"iss": "evil"})))));
    forged.push(("plain JWT typ", sign_typed(&kid, &claims(json!({})), "JWT")));
    forged.push((
        "ID token typ",
        sign_typed(&kid, &claims(json!({})), "id+jwt"),
    ));
    forged.push((
        "issued in the future",
        sign(&kid, &claims(json!({"iat": now + 600}))),
    ));
    forged.push(("missing exp", sign(&kid, &claims(json!({"exp": null})))));
    forged.push(("missing nbf", sign(&kid, &claims(json!({"nbf": null})))));
    let valid = sign(&kid, &claims(json!({})));
    let parts: Vec<&str> = valid.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(&claims(json!({"sub": format!("usr_{}", "a".repeat(32))}))),
        parts[2]
    );
    forged.push(("tampered payload", tampered));
    forged.push(("truncated signature", valid[..valid.len() - 4].to_owned()));
    forged.push(("other secret", {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.clone());
        header.typ = Some("at+jwt".to_owned());
        jsonwebtoken::encode(
            &header,
            &claims(json!({})),
            &encoding_key("another-secret-entirely-0123456789", &kid),
        )
        .unwrap()
    }));
    for (attack, token) in forged {
        let res = status_with(&app, &token).await;
        assert_eq!(res.status(), 401, "{attack} must be refused");
        let challenge = res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(challenge.starts_with("Bearer "), "{attack}: {challenge}");
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{attack}: {challenge}"
        );
        let code = if attack == "expired" {
            "token_expired"
        } else {
            "invalid_token"
        };
        assert_problem(res, 401, code).await;
    }
}

async fn rotated_keys_keep_verifying(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let old_token = app.user("ann@example.com").await.token;
    let old_kid = jsonwebtoken::decode_header(&old_token)
        .unwrap()
        .kid
        .unwrap();
    let secret = app.vars["JWT_SIGNING_SECRET"].clone();
    let new_kid = app
        .store
        .rotate_signing_key(&|kid| public_key(&secret, kid))
        .await
        .unwrap();
    app.state.keys.reload(&app.store).await.unwrap();

    let login: Value = app
        .client
        .post(app.url("/v1/auth/login"))
        .json(&json!({"email": "ann@example.com", "password": crate::helpers::PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new_token = login["access_token"].as_str().unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(new_token).unwrap().kid.unwrap(),
        new_kid
    );
    assert_eq!(status_with(&app, new_token).await.status(), 200);
    assert_eq!(
        status_with(&app, &old_token).await.status(),
        200,
        "retired key verifies until its tokens expire"
    );
    let jwks: Value = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(
        kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()),
        "{kids:?}"
    );
}
