//! The web console at `/app`: server-rendered pages over the same handlers, extractors and
//! store calls as the API, so every action passes the same authorization.
//!
//! - Pages are askama templates (`templates/console/`), with one stylesheet and a small
//!   script of our own and htmx 2 vendored under `assets/` (served from `/app/static/`):
//!   every form is a plain HTML form that works without JavaScript.
//! - Sign-in is the API's cookie session (`SameSite=Lax`, `HttpOnly`). A form's
//!   `csrf_token` field is moved into the `X-CSRF-Token` header before the request reaches
//!   its handler ([`csrf_from_form`]), so the API's own CSRF check guards the console too;
//!   a cross-origin `Origin` is refused outright.
//! - An [`ApiError`] becomes an HTML page with the same status and problem code; a missing
//!   or expired session redirects to the sign-in page ([`html_problems`]).
//! - Every console response carries a strict CSP (no inline script, `frame-ancestors
//!   'none'`), `X-Content-Type-Options: nosniff`, `Referrer-Policy: same-origin` and
//!   `Cache-Control: no-store` ([`security_headers`]).

mod account;
mod activity;
mod billing;
mod operator;
mod pages;
mod scim;
mod workspace;

use askama::Template;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::auth::user::CSRF_HEADER;
use crate::http::error::ApiError;
use crate::state::AppState;

/// Largest console form body.
const FORM_LIMIT: usize = 64 * 1024;

/// The console's routes, with its layers.
pub(crate) fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/app") }))
        .route("/app", get(pages::home))
        .route("/app/login", get(pages::login_page).post(pages::login))
        .route("/app/signup", get(pages::signup_page).post(pages::signup))
        .route("/app/logout", post(pages::logout))
        .route("/app/orgs", post(pages::create_org))
        .route(
            "/app/forgot",
            get(account::forgot_page).post(account::forgot),
        )
        .route(
            "/verify-email",
            get(account::verify_page).post(account::verify),
        )
        .route(
            "/reset-password",
            get(account::reset_page).post(account::reset),
        )
        .route(
            "/accept-invitation",
            get(account::accept_page).post(account::accept),
        )
        .route("/app/account", get(account::account))
        .route("/app/dev/mail", get(account::mailbox))
        .route(
            "/app/account/sessions/{session_id}/revoke",
            post(account::revoke_session),
        )
        .route("/app/account/password", post(account::password))
        .route("/app/orgs/{org_id}", get(pages::org))
        .route("/app/orgs/{org_id}/settings", post(pages::update_settings))
        .route("/app/orgs/{org_id}/delete", post(pages::delete))
        .route(
            "/app/orgs/{org_id}/workspaces",
            get(pages::workspaces).post(pages::create_workspace_form),
        )
        .route(
            "/app/orgs/{org_id}/workspaces/{workspace_id}/delete",
            post(pages::delete_workspace_form),
        )
        .route("/app/orgs/{org_id}/members", get(pages::members))
        .route("/app/orgs/{org_id}/invitations", post(pages::invite))
        .route(
            "/app/orgs/{org_id}/roles",
            get(pages::roles).post(pages::create_role_form),
        )
        .route(
            "/app/orgs/{org_id}/roles/{role_id}/delete",
            post(pages::delete_role_form),
        )
        .route(
            "/app/orgs/{org_id}/members/{user_id}/role",
            post(pages::change_role),
        )
        .route(
            "/app/orgs/{org_id}/members/{user_id}/remove",
            post(pages::remove),
        )
        .route(
            "/app/orgs/{org_id}/api-keys/{key_id}/rotate",
            post(pages::rotate_key),
        )
        .route(
            "/app/orgs/{org_id}/invitations/{invitation_id}/resend",
            post(pages::resend_invite),
        )
        .route(
            "/app/orgs/{org_id}/invitations/{invitation_id}/revoke",
            post(pages::revoke_invite),
        )
        .route(
            "/app/orgs/{org_id}/api-keys",
            get(pages::keys).post(pages::create_key),
        )
        .route(
            "/app/orgs/{org_id}/api-keys/{key_id}/revoke",
            post(pages::revoke_key),
        )
        .route("/app/orgs/{org_id}/audit", get(pages::audit))
        .route("/app/orgs/{org_id}/scim", get(scim::scim))
        .route("/app/orgs/{org_id}/scim/tokens", post(scim::create_token))
        .route(
            "/app/orgs/{org_id}/scim/tokens/{token_id}/revoke",
            post(scim::revoke_token),
        )
        .route(
            "/app/orgs/{org_id}/scim/role-mappings",
            post(scim::set_mappings),
        )
        .route("/app/orgs/{org_id}/activity", get(activity::feed))
        .route("/app/orgs/{org_id}/broadcast", post(activity::broadcast))
        .route("/app/orgs/{org_id}/usage", get(activity::usage))
        .route("/app/orgs/{org_id}/jobs", get(activity::jobs))
        .route(
            "/app/orgs/{org_id}/workspaces/{workspace_id}",
            get(workspace::workspace),
        )
        .route(
            "/app/orgs/{org_id}/workspaces/{workspace_id}/rename",
            post(workspace::rename),
        )
        .route(
            "/app/orgs/{org_id}/workspaces/{workspace_id}/roles",
            post(workspace::assign),
        )
        .route(
            "/app/orgs/{org_id}/workspaces/{workspace_id}/roles/{user_id}/remove",
            post(workspace::unassign),
        )
        .route(
            "/app/orgs/{org_id}/roles/{role_id}",
            get(pages::role).post(pages::update_role_form),
        )
        .route("/app/orgs/{org_id}/billing", get(billing::billing))
        .route(
            "/app/orgs/{org_id}/billing/checkout",
            post(billing::checkout),
        )
        .route("/app/orgs/{org_id}/billing/portal", post(billing::portal))
        .route(
            "/app/orgs/{org_id}/billing/plan",
            post(billing::change_plan),
        )
        .route(
            "/app/orgs/{org_id}/jobs/{job_id}/cancel",
            post(activity::cancel),
        )
        .route(
            "/app/orgs/{org_id}/jobs/{job_id}/retry",
            post(activity::retry),
        )
        .route(
            "/app/operator/login",
            get(operator::login_page).post(operator::login),
        )
        .route("/app/operator/logout", post(operator::logout))
        .route("/app/operator", get(operator::orgs))
        .route("/app/operator/orgs/{org_id}", get(operator::org))
        .route("/app/operator/orgs/{org_id}/plan", post(operator::set_plan))
        .route(
            "/app/operator/orgs/{org_id}/suspend",
            post(operator::suspend),
        )
        .route(
            "/app/operator/orgs/{org_id}/reactivate",
            post(operator::reactivate),
        )
        .route(
            "/app/operator/orgs/{org_id}/features",
            post(operator::set_flag),
        )
        .route("/app/static/{file}", get(asset))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            html_problems,
        ))
        .layer(axum::middleware::from_fn(csrf_from_form))
        .layer(axum::middleware::from_fn(security_headers))
}

/// Vendored and own assets, compiled into the binary.
async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, kind): (&'static [u8], &str) = match file.as_str() {
        "console.css" => (
            include_bytes!("../../assets/console/console.css"),
            "text/css; charset=utf-8",
        ),
        "console.js" => (
            include_bytes!("../../assets/console/console.js"),
            "text/javascript; charset=utf-8",
        ),
        "htmx-2.0.11.min.js" => (
            include_bytes!("../../assets/vendor/htmx-2.0.11.min.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return ApiError::not_found().into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// The console's security headers on every response.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Refuses a cross-origin form post, and hands a form's `csrf_token` field to the API's CSRF
/// check as the `X-CSRF-Token` header.
async fn csrf_from_form(req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    if !same_origin(&req) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf_failed",
            "This form was sent from another site.",
        )
        .into_response();
    }
    let (mut parts, body) = req.into_parts();
    let bytes: Bytes = match axum::body::to_bytes(body, FORM_LIMIT).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "The form is too large.",
            )
            .into_response()
        }
    };
    let token = url::form_urlencoded::parse(&bytes)
        .find(|(name, _)| name == "csrf_token")
        .map(|(_, value)| value.into_owned());
    if let Some(value) = token.and_then(|t| HeaderValue::from_str(&t).ok()) {
        parts.headers.insert(CSRF_HEADER, value);
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// No `Origin` (a same-origin navigation from an old browser) or one naming this host.
fn same_origin(req: &Request) -> bool {
    same_origin_headers(req.headers())
}

/// True unless the request names an `Origin` other than its own host (a browser's
/// cross-site request; clients that send no `Origin` are not browsers).
pub(crate) fn same_origin_headers(headers: &axum::http::HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| url::Url::parse(o).ok())
        .and_then(|u| {
            u.host_str()
                .map(|h| u.port().map_or(h.to_owned(), |p| format!("{h}:{p}")))
        });
    matches!((host, origin_host), (Some(h), Some(o)) if h.eq_ignore_ascii_case(&o))
}

/// The error page.
#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage {
    chrome: pages::Chrome,
    title: String,
    detail: String,
    code: String,
    request_id: Option<String>,
}

/// Turns the API's problems into pages: 401 redirects to the sign-in page, anything else
/// is an error page with the same status and code.
async fn html_problems(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let request_id = req
        .headers()
        .get(crate::http::meta::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let response = next.run(req).await;
    let Some(err) = response.extensions().get::<ApiError>().cloned() else {
        return response;
    };
    if err.status() == StatusCode::UNAUTHORIZED {
        let to = if path.starts_with("/app/operator") {
            "/app/operator/login"
        } else {
            "/app/login"
        };
        return Redirect::to(to).into_response();
    }
    let problem = err.to_problem(request_id.clone());
    let page = ErrorPage {
        chrome: pages::Chrome::plain(&state),
        title: problem.title.clone(),
        detail: problem.detail.clone().unwrap_or_default(),
        code: problem.code.clone(),
        request_id,
    };
    match page.render() {
        Ok(html) => {
            let mut page = (err.status(), Html(html)).into_response();
            // Retry-After and the like stay.
            for (name, value) in response.headers() {
                if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                    page.headers_mut().insert(name.clone(), value.clone());
                }
            }
            page
        }
        Err(render) => ApiError::internal(&render).into_response(),
    }
}
