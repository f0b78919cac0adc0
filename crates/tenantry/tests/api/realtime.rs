//! The activity feed, broadcasts and live events (WebSocket and server-sent events), with a
//! real WebSocket client against the real server.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::{create_key, Backend, Instance, Org, TestApp, User};
use crate::on_both_backends;

on_both_backends!(
    the_feed_lists_significant_events_with_names,
    broadcasts_are_permissioned_validated_and_limited,
    each_event_type_reaches_its_org_only,
    a_member_without_audit_read_gets_feed_events_only,
    resuming_loses_and_repeats_nothing,
    a_removed_member_is_disconnected,
    a_revoked_key_is_disconnected,
    an_expired_token_is_disconnected,
    a_slow_reader_is_dropped_while_others_keep_receiving,
    server_sent_events_carry_the_same_stream,
    an_event_through_one_instance_reaches_a_socket_on_another,
);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a test waits for an event that must come.
const WAIT: Duration = Duration::from_secs(10);

fn ws_url(app: &TestApp, base: Option<&str>, query: &str) -> String {
    let base = base.unwrap_or(&app.base).replacen("http", "ws", 1);
    format!("{base}/v1/ws?{query}")
}

/// Connects with `Authorization: Bearer token` (unless `query` carries `token=`) and
/// reads the greeting.
async fn connect_to(base: String, token: Option<&str>) -> Ws {
    let mut request = base.into_client_request().unwrap();
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let hello = next_message(&mut ws).await;
    assert_eq!(hello["type"], "subscribed", "{hello}");
    ws
}

async fn connect(app: &TestApp, token: &str, org: &Org) -> Ws {
    connect_to(ws_url(app, None, &format!("org_id={org}")), Some(token)).await
}

/// The HTTP status a refused upgrade answers.
async fn refused(url: String, token: Option<&str>) -> u16 {
    let mut request = url.into_client_request().unwrap();
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => res.status().as_u16(),
        other => panic!("expected a refused upgrade, got {:?}", other.map(|_| ())),
    }
}

/// The next text message, as JSON.
async fn next_message(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("the socket is open")
            .expect("a frame");
        match msg {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => continue,
        }
    }
}

/// The next event (control messages skipped).
async fn next_event(ws: &mut Ws) -> Value {
    loop {
        let msg = next_message(ws).await;
        if msg["type"]
            .as_str()
            .is_some_and(|t| t.chars().any(|c| c.is_ascii_uppercase()))
        {
            return msg;
        }
    }
}

/// Waits for the socket to close; returns its close code.
async fn closed(ws: &mut Ws) -> Option<CloseCode> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("closed in time")
        {
            None | Some(Err(_)) => return None,
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
            Some(Ok(_)) => continue,
        }
    }
}

async fn broadcast(app: &TestApp, user: &str, org: &Org, message: &str) -> Value {
    let res = app
        .as_(user)
        .post(
            format!("/v1/orgs/{org}/broadcast"),
            json!({ "message": message }),
        )
        .await;
    assert_eq!(res.status(), 201, "broadcast");
    res.json().await
}

async fn the_feed_lists_significant_events_with_names(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let bob = app.member(&acme, "bob@example.com", "member").await;
    let res = app
        .as_(&owner)
        .patch(
            format!("/v1/orgs/{acme}/members/{}", bob.id),
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(res.status(), 204);
    let sent = broadcast(&app, &owner, &acme, "Maintenance at 6pm").await;
    assert_eq!(sent["type"], "BROADCAST_MESSAGE");
    assert_eq!(sent["payload"]["message"], "Maintenance at 6pm");
    assert_eq!(sent["payload"]["sentBy"], owner.id.to_string());
    // A record outside the feed: renaming a workspace.
    let ws: Value = app
        .as_(&owner)
        .post(
            format!("/v1/orgs/{acme}/workspaces"),
            json!({"name": "Ops", "slug": "ops"}),
        )
        .await
        .json()
        .await;
    let res = app
        .as_(&owner)
        .patch(
            format!("/v1/orgs/{acme}/workspaces/{}", ws["id"].as_str().unwrap()),
            json!({"name": "Operations"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .as_(&owner)
        .delete(format!("/v1/orgs/{acme}/members/{}", bob.id))
        .await;
    assert_eq!(res.status(), 204);
    let carol = app.member(&acme, "carol@example.com", "readonly").await;

    let feed: Value = app
        .as_(&carol)
        .get(format!("/v1/orgs/{acme}/activities"))
        .await
        .json()
        .await;
    let types: Vec<&str> = feed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "USER_JOINED",
            "INVITATION_SENT",
            "USER_REMOVED",
            "WORKSPACE_CREATED",
            "BROADCAST_MESSAGE",
            "ROLE_CHANGED",
            "USER_JOINED",
            "INVITATION_SENT",
        ],
        "newest first, the workspace rename left out: {feed}"
    );
    let data = feed["data"].as_array().unwrap();
    let joined = &data[0];
    assert_eq!(joined["payload"]["userId"], carol.id.to_string());
    assert_eq!(joined["payload"]["email"], "carol@example.com");
    assert_eq!(joined["payload"]["name"], "Ann");
    assert_eq!(joined["payload"]["role"], "readonly");
    let removed = &data[2];
    assert_eq!(removed["payload"]["userId"], bob.id.to_string());
    assert_eq!(removed["payload"]["removedBy"], owner.id.to_string());
    assert_eq!(
        removed["payload"]["email"], "bob@example.com",
        "a removed member keeps their name"
    );
    assert_eq!(removed["actor"]["email"], "owner@example.com");
    let role = &data[5];
    assert_eq!(role["payload"]["from"], "member");
    assert_eq!(role["payload"]["to"], "admin");
    assert_eq!(data[4]["id"], sent["id"], "an activity is its audit record");

    // Pages of two, newest first, through the cursor.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/orgs/{acme}/activities?limit=3&cursor={c}"),
            None => format!("/v1/orgs/{acme}/activities?limit=3"),
        };
        let page: Value = app.as_(&carol).get(path).await.json().await;
        for a in page["data"].as_array().unwrap() {
            seen.push(a["type"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, types);

    // Another organization's feed is a 404.
    let other = app.user("mallory@example.com").await;
    let res = app
        .as_(&other)
        .get(format!("/v1/orgs/{acme}/activities"))
        .await;
    res.problem(404, "not_found").await;
}

async fn broadcasts_are_permissioned_validated_and_limited(backend: Backend) {
    let Some(app) = TestApp::on(backend)
        .with_vars(|v| {
            v.insert("BROADCAST_RATE_LIMIT".into(), "2".into());
        })
        .await
    else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let member = app.member(&acme, "m@example.com", "member").await;
    let res = app
        .as_(&member)
        .post(
            format!("/v1/orgs/{acme}/broadcast"),
            json!({"message": "hi"}),
        )
        .await;
    let problem = res.problem(403, "forbidden").await;
    assert_eq!(problem["permission"], "org:broadcast");
    for (body, field) in [
        (json!({"message": "   "}), "message"),
        (json!({"message": "x".repeat(1001)}), "message"),
        (json!({"message": "bell\u{7}"}), "message"),
    ] {
        let res = app
            .as_(&owner)
            .post(format!("/v1/orgs/{acme}/broadcast"), body)
            .await;
        let problem = res.problem(422, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], field);
    }
    let res = app
        .as_(&owner)
        .post(format!("/v1/orgs/{acme}/broadcast"), json!({"msg": "typo"}))
        .await;
    assert_eq!(res.status(), 422);
    broadcast(&app, &owner, &acme, "one").await;
    broadcast(&app, &owner, &acme, &format!("two\n{}", "y".repeat(990))).await;
    let res = app
        .as_(&owner)
        .post(
            format!("/v1/orgs/{acme}/broadcast"),
            json!({"message": "three"}),
        )
        .await;
    assert!(res.headers().contains_key("retry-after"));
    res.problem(429, "rate_limited").await;
    // Audited, with the message.
    let events: Value = app
        .as_(&owner)
        .get(format!(
            "/v1/orgs/{acme}/audit-events?action=organization.broadcast"
        ))
        .await
        .json()
        .await;
    assert_eq!(events["data"].as_array().unwrap().len(), 2);
    assert_eq!(events["data"][1]["metadata"]["message"], "one");
}

async fn each_event_type_reaches_its_org_only(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let eve = app.user("eve@example.com").await;
    let globex = app.org_of(&eve, "globex").await;
    // A foreign organization is refused exactly like a missing one.
    let foreign = refused(ws_url(&app, None, &format!("org_id={acme}")), Some(&eve)).await;
    let missing = refused(
        ws_url(&app, None, "org_id=org_0190f0f0f0f07000800000000000000a"),
        Some(&eve),
    )
    .await;
    assert_eq!((foreign, missing), (404, 404));
    assert_eq!(refused(ws_url(&app, None, "org_id=x"), None).await, 401);
    // The original product's form: `/ws?token=`, every organization of the user.
    let url = format!(
        "{}/ws?token={}",
        app.base.replacen("http", "ws", 1),
        owner.token
    );
    let mut ws = connect_to(url, None).await;
    let mut theirs = connect(&app, &eve, &globex).await;

    let bob = app.member(&acme, "bob@example.com", "member").await;
    let sent = next_event(&mut ws).await;
    assert_eq!(sent["type"], "INVITATION_SENT");
    let joined = next_event(&mut ws).await;
    assert_eq!(joined["type"], "USER_JOINED");
    assert_eq!(joined["org_id"], acme.as_str());
    assert_eq!(joined["payload"]["userId"], bob.id.to_string());
    assert_eq!(joined["payload"]["email"], "bob@example.com");
    assert_eq!(joined["payload"]["role"], "member");
    assert!(joined["id"].as_str().unwrap().starts_with("aud_"));
    assert!(joined["at"].is_string());

    let res = app
        .as_(&owner)
        .put(format!("/v1/orgs/{acme}/plan"), json!({"plan": "pro"}))
        .await;
    assert_eq!(res.status(), 200);
    let plan = next_event(&mut ws).await;
    assert_eq!(plan["type"], "PLAN_UPGRADED");
    assert_eq!(plan["payload"]["from"], "free");
    assert_eq!(plan["payload"]["to"], "pro");
    assert!(plan["payload"]["upgradedAt"].is_string());

    let res = app
        .as_(&owner)
        .post(
            format!("/v1/orgs/{acme}/api-keys"),
            json!({"name": "ci", "scopes": ["data:read"]}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let key: Value = res.json().await;
    let created = next_event(&mut ws).await;
    assert_eq!(created["type"], "API_KEY_CREATED");
    assert_eq!(created["payload"]["keyId"], key["id"]);
    assert!(
        !created
            .to_string()
            .contains(key["secret"].as_str().unwrap()),
        "never the secret"
    );

    broadcast(&app, &owner, &acme, "hello acme").await;
    let message = next_event(&mut ws).await;
    assert_eq!(message["type"], "BROADCAST_MESSAGE");
    assert_eq!(message["payload"]["message"], "hello acme");
    assert_eq!(message["payload"]["sentBy"], owner.id.to_string());
    assert!(message["payload"]["sentAt"].is_string());

    let res = app
        .as_(&owner)
        .delete(format!("/v1/orgs/{acme}/members/{}", bob.id))
        .await;
    assert_eq!(res.status(), 204);
    let removed = next_event(&mut ws).await;
    assert_eq!(removed["type"], "USER_REMOVED");
    assert_eq!(removed["payload"]["userId"], bob.id.to_string());
    assert_eq!(removed["payload"]["removedBy"], owner.id.to_string());

    // Globex's socket heard none of it: its first event is its own.
    broadcast(&app, &eve, &globex, "hello globex").await;
    let first = next_event(&mut theirs).await;
    assert_eq!(first["payload"]["message"], "hello globex", "{first}");
    assert_eq!(first["org_id"], globex.as_str());

    // Control messages: ping, and subscribing to a foreign organization.
    theirs
        .send(Message::text(json!({"type": "ping"}).to_string()))
        .await
        .unwrap();
    assert_eq!(next_message(&mut theirs).await["type"], "pong");
    theirs
        .send(Message::text(
            json!({"type": "subscribe", "org_id": acme.as_str()}).to_string(),
        ))
        .await
        .unwrap();
    let refusal = next_message(&mut theirs).await;
    assert_eq!(refusal["type"], "error");
    assert_eq!(refusal["status"], 404);
    theirs
        .send(Message::text("{\"type\": \"dance\"}"))
        .await
        .unwrap();
    assert_eq!(next_message(&mut theirs).await["code"], "invalid_message");
}

async fn a_member_without_audit_read_gets_feed_events_only(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let reader = app.member(&acme, "r@example.com", "readonly").await;
    let mut full = connect(&app, &owner, &acme).await;
    let mut partial = connect(&app, &reader, &acme).await;
    let ws: Value = app
        .as_(&owner)
        .post(
            format!("/v1/orgs/{acme}/workspaces"),
            json!({"name": "Ops", "slug": "ops"}),
        )
        .await
        .json()
        .await;
    let res = app
        .as_(&owner)
        .patch(
            format!("/v1/orgs/{acme}/workspaces/{}", ws["id"].as_str().unwrap()),
            json!({"name": "Operations"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    broadcast(&app, &owner, &acme, "done").await;
    let kinds = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .map(|e| match e["type"].as_str().unwrap() {
                "AUDIT_EVENT" => {
                    format!("AUDIT_EVENT {}", e["payload"]["action"].as_str().unwrap())
                }
                t => t.to_owned(),
            })
            .collect()
    };
    let mut owner_saw = Vec::new();
    for _ in 0..3 {
        owner_saw.push(next_event(&mut full).await);
    }
    assert_eq!(
        kinds(&owner_saw),
        [
            "WORKSPACE_CREATED",
            "AUDIT_EVENT workspace.updated",
            "BROADCAST_MESSAGE"
        ]
    );
    let mut reader_saw = Vec::new();
    for _ in 0..2 {
        reader_saw.push(next_event(&mut partial).await);
    }
    assert_eq!(
        kinds(&reader_saw),
        ["WORKSPACE_CREATED", "BROADCAST_MESSAGE"]
    );
}

async fn resuming_loses_and_repeats_nothing(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let mut ws = connect(&app, &owner, &acme).await;
    broadcast(&app, &owner, &acme, "m1").await;
    let first = next_event(&mut ws).await;
    assert_eq!(first["payload"]["message"], "m1");
    drop(ws);
    for m in ["m2", "m3", "m4"] {
        broadcast(&app, &owner, &acme, m).await;
    }
    let since = first["id"].as_str().unwrap();
    let url = ws_url(&app, None, &format!("org_id={acme}&since={since}"));
    let mut ws = connect_to(url, Some(&owner)).await;
    broadcast(&app, &owner, &acme, "m5").await;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(next_event(&mut ws).await["payload"]["message"].clone());
    }
    assert_eq!(got, ["m2", "m3", "m4", "m5"]);
    broadcast(&app, &owner, &acme, "m6").await;
    assert_eq!(
        next_event(&mut ws).await["payload"]["message"],
        "m6",
        "nothing twice"
    );

    // `Last-Event-ID` works as `since` does.
    let mut request = ws_url(&app, None, &format!("org_id={acme}"))
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", owner.token).parse().unwrap(),
    );
    request
        .headers_mut()
        .insert("last-event-id", since.parse().unwrap());
    let (mut again, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    next_message(&mut again).await;
    assert_eq!(next_event(&mut again).await["payload"]["message"], "m2");

    // An id of another organization, or several organizations, cannot be resumed.
    let eve = app.user("eve@example.com").await;
    let globex = app.org_of(&eve, "globex").await;
    let url = ws_url(&app, None, &format!("org_id={globex}&since={since}"));
    assert_eq!(refused(url, Some(&eve)).await, 422);
    let url = ws_url(&app, None, &format!("org_id={acme},{globex}&since={since}"));
    assert_eq!(refused(url, Some(&owner)).await, 422);
}

async fn a_removed_member_is_disconnected(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let bob = app.member(&acme, "bob@example.com", "member").await;
    let mut ws = connect(&app, &bob, &acme).await;
    let res = app
        .as_(&owner)
        .delete(format!("/v1/orgs/{acme}/members/{}", bob.id))
        .await;
    assert_eq!(res.status(), 204);
    let removed = next_event(&mut ws).await;
    assert_eq!(removed["type"], "USER_REMOVED");
    assert_eq!(closed(&mut ws).await, Some(CloseCode::Library(4403)));
}

async fn a_revoked_key_is_disconnected(backend: Backend) {
    let Some(app) = TestApp::on(backend)
        .with_vars(|v| {
            v.insert("API_KEY_CACHE_SEC".into(), "0".into());
        })
        .await
    else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let key = create_key(
        &app,
        &owner,
        &acme,
        json!({"name": "live", "scopes": ["org:read"]}),
    )
    .await;
    let secret = key["secret"].as_str().unwrap();
    // A key follows its own organization by default.
    let mut ws = connect_to(ws_url(&app, None, ""), Some(secret)).await;
    broadcast(&app, &owner, &acme, "to the key").await;
    assert_eq!(next_event(&mut ws).await["type"], "BROADCAST_MESSAGE");
    let res = app
        .as_(&owner)
        .delete(format!(
            "/v1/orgs/{acme}/api-keys/{}",
            key["id"].as_str().unwrap()
        ))
        .await;
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(closed(&mut ws).await, Some(CloseCode::Library(4401)));
}

async fn a_slow_reader_is_dropped_while_others_keep_receiving(backend: Backend) {
    let Some(app) = TestApp::on(backend)
        .with_vars(|v| {
            v.insert("BROADCAST_RATE_LIMIT".into(), "0".into());
            v.insert("ORG_RATE_LIMIT_FREE".into(), "0".into());
            v.insert("REALTIME_PING_SEC".into(), "2".into());
        })
        .await
    else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    // The slow reader: a tiny receive window, and it reads nothing after the greeting.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let addr: std::net::SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let mut request = ws_url(&app, None, &format!("org_id={acme}"))
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", owner.token).parse().unwrap(),
    );
    let (mut slow, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream))
        .await
        .unwrap();
    next_message(&mut slow).await;
    let mut fast = connect(&app, &owner, &acme).await;
    // More than the kernel's socket buffers hold on loopback (about a megabyte), so the
    // slow reader's connection really backs up.
    let total = 2500;
    let big = "z".repeat(990);
    let reader = tokio::spawn(async move {
        let mut got = 0;
        while got < total {
            let event = next_event(&mut fast).await;
            assert_eq!(event["type"], "BROADCAST_MESSAGE");
            got += 1;
        }
        got
    });
    let senders = 8;
    let mut sent = Vec::new();
    for s in 0..senders {
        let (client, url, token, big) = (
            app.client.clone(),
            app.url(&format!("/v1/orgs/{acme}/broadcast")),
            owner.token.clone(),
            big.clone(),
        );
        sent.push(tokio::spawn(async move {
            for i in (s..total).step_by(senders) {
                let res = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({ "message": format!("{i} {big}") }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 201);
            }
        }));
    }
    for task in sent {
        task.await.unwrap();
    }
    assert_eq!(
        reader.await.unwrap(),
        total,
        "the fast reader got everything"
    );
    // The slow one was cut off: it ends before all events arrived.
    let mut received = 0;
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(Ok(msg)) = slow.next().await {
            match msg {
                Message::Text(_) => received += 1,
                Message::Close(_) => break,
                _ => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the slow reader's connection ended");
    assert!(
        received < total,
        "dropped before all {total} events ({received})"
    );
}

async fn server_sent_events_carry_the_same_stream(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let first = broadcast(&app, &owner, &acme, "before").await;
    let res = app
        .client
        .get(app.url(&format!("/v1/orgs/{acme}/events")))
        .bearer_auth(&owner.token)
        .header("last-event-id", first["id"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    broadcast(&app, &owner, &acme, "after").await;
    let mut body = res.bytes_stream();
    let mut text = String::new();
    tokio::time::timeout(WAIT, async {
        while !text.contains("\"after\"") {
            let chunk = body.next().await.unwrap().unwrap();
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    })
    .await
    .expect("the event in time");
    assert!(text.contains("event: BROADCAST_MESSAGE"), "{text}");
    assert!(
        !text.contains("\"before\""),
        "resumed after `before`: {text}"
    );
    let eve = app.user("eve@example.com").await;
    let res = app.as_(&eve).get(format!("/v1/orgs/{acme}/events")).await;
    res.problem(404, "not_found").await;
}

async fn an_event_through_one_instance_reaches_a_socket_on_another(backend: Backend) {
    if backend == Backend::Sqlite {
        // One process owns an SQLite database: there is no second instance to reach.
        return;
    }
    for redis in [false, true] {
        let Some(app) = TestApp::on(backend)
            .with_vars(|v| {
                if redis {
                    let url = std::env::var("REDIS_TEST_URL")
                        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
                    v.insert("REDIS_URL".into(), url);
                    v.insert(
                        "REDIS_KEY_PREFIX".into(),
                        format!("tenantry-test:{}:", uuid::Uuid::new_v4().simple()),
                    );
                }
            })
            .await
        else {
            return;
        };
        let owner: User = app.user("owner@example.com").await;
        let acme = app.org_of(&owner, "acme").await;
        let other = Instance::start(&app.vars).await;
        let url = ws_url(&app, Some(&other.base), &format!("org_id={acme}"));
        let mut ws = connect_to(url, Some(&owner)).await;
        broadcast(&app, &owner, &acme, "across").await;
        let event = next_event(&mut ws).await;
        assert_eq!(event["payload"]["message"], "across", "redis: {redis}");
        // A record sealed by the worker (not by the request) travels too.
        let bob = app.member(&acme, "bob@example.com", "member").await;
        assert_eq!(next_event(&mut ws).await["type"], "INVITATION_SENT");
        let joined = next_event(&mut ws).await;
        assert_eq!(joined["payload"]["userId"], bob.id.to_string());
        drop(ws);
        other.stop().await;
    }
}

async fn an_expired_token_is_disconnected(backend: Backend) {
    let Some(app) = TestApp::on(backend)
        .with_vars(|v| {
            v.insert("ACCESS_TOKEN_TTL_SEC".into(), "1".into());
            v.insert("REALTIME_RECHECK_SEC".into(), "1".into());
        })
        .await
    else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let mut ws = connect(&app, &owner, &acme).await;
    let started = std::time::Instant::now();
    // The token lives one second, plus the clock leeway every verifier allows.
    assert_eq!(closed(&mut ws).await, Some(CloseCode::Library(4401)));
    assert!(started.elapsed() < Duration::from_secs(15));
}
