//! The live event endpoints: WebSocket `GET /v1/ws` (also `/ws`, the original product's
//! path) and server-sent events `GET /v1/orgs/{org_id}/events`.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::session::{close, MAX_ORGS};
use super::{Next, Session};
use crate::auth::OrgMember;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::AppQuery;
use crate::ids::{AuditEventId, OrgId};
use crate::state::AppState;

/// Largest control message a client may send.
const MAX_MESSAGE: usize = 16 * 1024;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(websocket))
        .routes(routes!(server_sent_events))
}

/// `/ws`, the original product's path (`?token=` as it used it), outside the document.
pub(crate) fn legacy_router() -> axum::Router<AppState> {
    axum::Router::new().route("/ws", axum::routing::get(websocket))
}

/// Where and how a WebSocket listens.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct WsQuery {
    /// Organizations to follow, comma-separated (default: every organization of the
    /// user, or the API key's own). More can be followed later with a `subscribe` message.
    pub org_id: Option<String>,
    /// An access token (or API key), for clients that cannot set `Authorization`. It
    /// appears in the URL, so proxies may log it: prefer the header or the session cookie.
    pub token: Option<String>,
    /// Resume after this event id (one organization only; `Last-Event-ID` is accepted
    /// too): the events after it are replayed from the log, then live ones follow.
    pub since: Option<String>,
}

/// A client's control message.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientMessage {
    /// Follow one more organization, optionally resuming after an event.
    Subscribe {
        org_id: String,
        #[serde(default)]
        since: Option<String>,
    },
    /// An application-level keep-alive, answered with `pong`.
    Ping,
}

/// The credential headers of a request (`?token=` becomes `Authorization`).
fn credential(headers: &HeaderMap, token: Option<&str>) -> Result<HeaderMap, ApiError> {
    let mut credential = HeaderMap::new();
    for name in [header::AUTHORIZATION, header::COOKIE] {
        if let Some(value) = headers.get(&name) {
            credential.insert(name, value.clone());
        }
    }
    if let Some(token) = token.filter(|_| !credential.contains_key(header::AUTHORIZATION)) {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| ApiError::invalid_token("The token is not a valid token."))?;
        credential.insert(header::AUTHORIZATION, value);
    }
    Ok(credential)
}

/// `since`, or else `Last-Event-ID`.
fn resume_point(
    since: Option<&str>,
    headers: &HeaderMap,
) -> Result<Option<AuditEventId>, ApiError> {
    let raw = since.or_else(|| headers.get("last-event-id").and_then(|v| v.to_str().ok()));
    raw.map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| {
            r.parse()
                .map_err(|_| ApiError::validation("since", "must be an event id (`aud_…`)"))
        })
        .transpose()
}

fn parse_org(raw: &str) -> Result<OrgId, ApiError> {
    raw.trim().parse().map_err(|_| ApiError::not_found())
}

/// Live events over a WebSocket. Authenticate with the session cookie, `Authorization:
/// Bearer` (access token or API key) or `?token=`. Each event is a JSON text message
/// `{"id","seq","type","org_id","at","actor","target","payload"}` (the activity shape);
/// callers without `audit:read` get feed events only. Clients may send `{"type":
/// "subscribe","org_id":…,"since":…}` and `{"type":"ping"}`. Close codes: 4001 slow
/// consumer, 4401 credential expired or revoked, 4403 no longer a member.
#[utoipa::path(get, path = "/v1/ws", tag = "realtime",
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(WsQuery),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 401, description = "Missing or invalid credential", body = Problem),
        (status = 403, description = "Cookie credential from another site's page (`cross_origin_refused`), or missing `org:read`", body = Problem),
        (status = 404, description = "No such organization (or not the caller's)", body = Problem),
        (status = 422, description = "Bad `since`, or `since` with several organizations", body = Problem),
        (status = 426, description = "Not a WebSocket upgrade request", body = Problem)))]
pub(crate) async fn websocket(
    State(state): State<AppState>,
    headers: HeaderMap,
    AppQuery(q): AppQuery<WsQuery>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let credential = credential(&headers, q.token.as_deref())?;
    if credential.is_empty() {
        return Err(ApiError::missing_credentials());
    }
    // A browser sends the session cookie with any site's WebSocket: only our own pages
    // may use it (a token in the header or the URL is the page's own choice).
    if !credential.contains_key(header::AUTHORIZATION)
        && !crate::console::same_origin_headers(&headers)
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_origin_refused",
            "A cookie-authenticated WebSocket must come from this site's own pages.",
        ));
    }
    let mut session = Session::new(state.clone(), credential);
    let orgs = match q.org_id.as_deref().filter(|o| !o.trim().is_empty()) {
        Some(list) => list
            .split(',')
            .map(parse_org)
            .collect::<Result<Vec<_>, _>>()?,
        None => session.default_orgs().await?,
    };
    if orgs.len() > MAX_ORGS {
        return Err(ApiError::validation(
            "org_id",
            format!("at most {MAX_ORGS} organizations"),
        ));
    }
    let since = resume_point(q.since.as_deref(), &headers)?;
    if since.is_some() && orgs.len() != 1 {
        return Err(ApiError::validation(
            "since",
            "resumes one organization: name it in `org_id`",
        ));
    }
    for org in orgs {
        session.subscribe(org, since).await?;
    }
    let upgrade = upgrade.map_err(|_| {
        ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "websocket_required",
            "This endpoint speaks WebSocket: send an upgrade request.",
        )
    })?;
    let ping = state.config.realtime.ping;
    Ok(upgrade
        .read_buffer_size(2048)
        .write_buffer_size(0)
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(move |socket| serve(socket, session, ping)))
}

/// A text message.
fn text(value: &serde_json::Value) -> Message {
    Message::text(value.to_string())
}

/// Pumps events to the socket and answers its messages until either side ends.
async fn serve(socket: WebSocket, mut session: Session, ping: Duration) {
    let (mut sink, mut stream) = socket.split();
    let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + ping, ping);
    let mut heard = Instant::now();
    let hello = serde_json::json!({"type": "subscribed", "org_ids": session.orgs()});
    if sink.send(text(&hello)).await.is_err() {
        return;
    }
    loop {
        let outgoing = tokio::select! {
            next = session.next() => match next {
                Next::Event(event) => Message::Text(event.json.clone()),
                Next::Close(code, reason) => {
                    let frame = CloseFrame { code, reason: reason.into() };
                    let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(Message::Close(Some(frame)))).await;
                    return;
                }
            },
            incoming = stream.next() => {
                heard = Instant::now();
                match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(Message::Text(raw))) => Box::pin(answer(&mut session, raw.as_str())).await,
                    Some(Ok(_)) => continue,
                }
            }
            _ = keepalive.tick() => {
                if heard.elapsed() > ping * 2 {
                    return;
                }
                Message::Ping(Default::default())
            }
        };
        // A client that takes nothing for a keep-alive interval is gone or stuck.
        match tokio::time::timeout(ping, sink.send(outgoing)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                metrics::counter!("realtime_slow_consumers_total").increment(1);
                let frame = CloseFrame {
                    code: close::SLOW_CONSUMER,
                    reason: "slow consumer".into(),
                };
                let _ = tokio::time::timeout(
                    Duration::from_millis(100),
                    sink.send(Message::Close(Some(frame))),
                )
                .await;
                return;
            }
        }
    }
}

/// The reply to a client's control message.
async fn answer(session: &mut Session, raw: &str) -> Message {
    let reply = match serde_json::from_str::<ClientMessage>(raw) {
        Ok(ClientMessage::Ping) => serde_json::json!({"type": "pong"}),
        Ok(ClientMessage::Subscribe { org_id, since }) => {
            let outcome = async {
                let org = parse_org(&org_id)?;
                let since = resume_point(since.as_deref(), &HeaderMap::new())?;
                session.subscribe(org, since).await?;
                Ok::<OrgId, ApiError>(org)
            }
            .await;
            match outcome {
                Ok(org) => serde_json::json!({"type": "subscribed", "org_ids": [org]}),
                Err(err) => serde_json::json!({
                    "type": "error", "org_id": org_id, "status": err.status().as_u16(), "code": err.code(),
                }),
            }
        }
        Err(err) => serde_json::json!({
            "type": "error", "status": 400, "code": "invalid_message", "detail": err.to_string(),
        }),
    };
    text(&reply)
}

/// Resume point of the event stream.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct SseQuery {
    /// Resume after this event id (`Last-Event-ID` is accepted too).
    pub since: Option<String>,
}

/// The organization's live events as server-sent events (`text/event-stream`), for
/// clients that cannot use WebSocket: the same events as `/v1/ws`, each with `id:` (the
/// event id, for `Last-Event-ID`), `event:` (its type) and `data:` (its JSON).
#[utoipa::path(get, path = "/v1/orgs/{org_id}/events", tag = "realtime",
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id"), SseQuery),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = String),
        (status = 403, description = "Missing permission", body = Problem),
        (status = 404, description = "No such organization", body = Problem),
        (status = 422, description = "Bad `since`", body = Problem)))]
pub(crate) async fn server_sent_events(
    State(state): State<AppState>,
    member: OrgMember,
    headers: HeaderMap,
    AppQuery(q): AppQuery<SseQuery>,
) -> Result<Response, ApiError> {
    let mut session = Session::new(state.clone(), credential(&headers, None)?);
    let since = resume_point(q.since.as_deref(), &headers)?;
    session.subscribe(member.ctx.org_id(), since).await?;
    let events = futures::stream::unfold(Some(session), |session| async move {
        let mut session = session?;
        match session.next().await {
            Next::Event(live) => {
                let event = Event::default()
                    .id(live.activity.id.to_string())
                    .event(live.activity.kind)
                    .data(live.json.as_str());
                Some((Ok::<Event, Infallible>(event), Some(session)))
            }
            Next::Close(code, reason) => {
                let event = Event::default()
                    .event("close")
                    .data(serde_json::json!({"code": code, "reason": reason}).to_string());
                Some((Ok(event), None))
            }
        }
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(state.config.realtime.ping))
        .into_response())
}
