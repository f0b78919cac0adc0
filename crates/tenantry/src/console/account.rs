//! The console's account flows: the links the emails carry (verify the address, reset the
//! password, accept an invitation), "forgot my password", and the signed-in user's own
//! sessions and password. Each calls the API's own handler.
//!
//! A link opens a page with a button, and the button's POST spends the token: a mail
//! scanner that follows links cannot use it up.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::pages::{chrome, page, Chrome};
use crate::api::auth::email::{
    request_password_reset, reset_password, verify_email, ResetIn, ResetRequestIn, TokenIn,
};
use crate::api::auth::me::{change_password, ChangePasswordIn};
use crate::api::orgs::invitations::{accept_invitation, AcceptIn};
use crate::auth::{CurrentUser, Via};
use crate::http::error::ApiError;
use crate::http::extract::AppJson;
use crate::ids::SessionId;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "console/message.html")]
struct MessagePage {
    chrome: Chrome,
    title: &'static str,
    text: String,
    next_href: String,
    next_label: &'static str,
}

fn message(
    state: &AppState,
    title: &'static str,
    text: impl Into<String>,
    next_href: impl Into<String>,
    next_label: &'static str,
) -> Result<Response, ApiError> {
    page(&MessagePage {
        chrome: Chrome::plain(state),
        title,
        text: text.into(),
        next_href: next_href.into(),
        next_label,
    })
}

#[derive(Template)]
#[template(path = "console/token_action.html")]
struct TokenPage {
    chrome: Chrome,
    title: &'static str,
    text: &'static str,
    error: Option<String>,
    action: &'static str,
    token: String,
    with_password: bool,
    button: &'static str,
    links: Vec<(String, &'static str)>,
}

/// A link's `?token=`.
#[derive(Deserialize)]
pub(super) struct TokenQuery {
    #[serde(default)]
    token: String,
}

/// A token posted back by the page's button.
#[derive(Deserialize)]
pub(super) struct TokenForm {
    token: String,
}

/// The email verification link's page.
pub(super) async fn verify_page(
    State(state): State<AppState>,
    Query(q): Query<TokenQuery>,
) -> Result<Response, ApiError> {
    page(&TokenPage {
        chrome: Chrome::plain(&state),
        title: "Verify your email address",
        text: "Confirm that this address is yours.",
        error: None,
        action: "/verify-email",
        token: q.token,
        with_password: false,
        button: "Verify my address",
        links: Vec::new(),
    })
}

/// Verifies the address, as `POST /v1/auth/verify-email` does.
pub(super) async fn verify(
    State(state): State<AppState>,
    parts: Parts,
    Form(form): Form<TokenForm>,
) -> Result<Response, ApiError> {
    verify_email(
        State(state.clone()),
        parts,
        AppJson(TokenIn { token: form.token }),
    )
    .await?;
    message(
        &state,
        "Address verified",
        "Thank you: your email address is confirmed.",
        "/app",
        "Go to the console",
    )
}

/// The "forgot my password" form.
pub(super) async fn forgot_page(State(state): State<AppState>) -> Result<Response, ApiError> {
    #[derive(Template)]
    #[template(path = "console/forgot.html")]
    struct ForgotPage {
        chrome: Chrome,
    }
    page(&ForgotPage {
        chrome: Chrome::plain(&state),
    })
}

/// The forgot form's field.
#[derive(Deserialize)]
pub(super) struct ForgotForm {
    email: String,
}

/// Sends the reset link, as `POST /v1/auth/password-reset/request` does; the answer is the
/// same whether or not the account exists.
pub(super) async fn forgot(
    State(state): State<AppState>,
    parts: Parts,
    Form(form): Form<ForgotForm>,
) -> Result<Response, ApiError> {
    let body = ResetRequestIn { email: form.email };
    request_password_reset(State(state.clone()), parts, AppJson(body)).await?;
    message(
        &state,
        "Check your email",
        "If that address has an account, a link to set a new password is on its way. It works once, for a limited time.",
        "/app/login",
        "Back to sign in",
    )
}

/// The reset link's page: a new password.
pub(super) async fn reset_page(
    State(state): State<AppState>,
    Query(q): Query<TokenQuery>,
) -> Result<Response, ApiError> {
    page(&TokenPage {
        chrome: Chrome::plain(&state),
        title: "Set a new password",
        text: "Every session and token of the account is signed out.",
        error: None,
        action: "/reset-password",
        token: q.token,
        with_password: true,
        button: "Set password",
        links: Vec::new(),
    })
}

/// The reset form's fields.
#[derive(Deserialize)]
pub(super) struct ResetForm {
    token: String,
    new_password: String,
}

/// Sets the new password, as `POST /v1/auth/password-reset` does.
pub(super) async fn reset(
    State(state): State<AppState>,
    parts: Parts,
    Form(form): Form<ResetForm>,
) -> Result<Response, ApiError> {
    let body = ResetIn {
        token: form.token.clone(),
        new_password: form.new_password,
    };
    match reset_password(State(state.clone()), parts, AppJson(body)).await {
        Ok(_) => message(
            &state,
            "Password set",
            "Sign in with your new password.",
            "/app/login",
            "Sign in",
        ),
        // A refused password stays on the form, with the token.
        Err(err) if err.status().as_u16() == 422 => {
            let problem = err.to_problem(None);
            let mut response = page(&TokenPage {
                chrome: Chrome::plain(&state),
                title: "Set a new password",
                text: "Every session and token of the account is signed out.",
                error: Some(problem.detail.unwrap_or(problem.title)),
                action: "/reset-password",
                token: form.token,
                with_password: true,
                button: "Set password",
                links: Vec::new(),
            })?;
            *response.status_mut() = err.status();
            Ok(response)
        }
        Err(err) => Err(err),
    }
}

/// The invitation link's page: accept when signed in, else sign in or sign up first.
pub(super) async fn accept_page(
    State(state): State<AppState>,
    user: Result<CurrentUser, ApiError>,
    Query(q): Query<TokenQuery>,
) -> Result<Response, ApiError> {
    let here = format!(
        "/accept-invitation?token={}",
        url::form_urlencoded::byte_serialize(q.token.as_bytes()).collect::<String>()
    );
    let encoded = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let Ok(user) = user else {
        return message_with_links(&state, &q.token, &here, &encoded);
    };
    page(&TokenPage {
        chrome: chrome(&state, &user).await?,
        title: "Join the organization",
        text: "You were invited to an organization. Accept to become a member.",
        error: None,
        action: "/accept-invitation",
        token: q.token,
        with_password: false,
        button: "Accept the invitation",
        links: Vec::new(),
    })
}

fn message_with_links(
    state: &AppState,
    token: &str,
    here: &str,
    encoded: &dyn Fn(&str) -> String,
) -> Result<Response, ApiError> {
    #[derive(Template)]
    #[template(path = "console/invited.html")]
    struct InvitedPage {
        chrome: Chrome,
        login: String,
        signup: String,
    }
    page(&InvitedPage {
        chrome: Chrome::plain(state),
        login: format!(
            "/app/login?next={}&invitation={}",
            encoded(here),
            encoded(token)
        ),
        signup: format!("/app/signup?invitation={}", encoded(token)),
    })
}

/// Accepts the invitation as the signed-in user, as `POST /v1/invitations/accept` does.
pub(super) async fn accept(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(form): Form<TokenForm>,
) -> Result<Response, ApiError> {
    let axum::Json(joined) =
        accept_invitation(State(state), user, AppJson(AcceptIn { token: form.token })).await?;
    Ok(Redirect::to(&format!("/app/orgs/{}", joined.org_id)).into_response())
}

/// One session of the account page.
struct SessionLine {
    id: SessionId,
    created_at: String,
    last_seen_at: String,
    from: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "console/account.html")]
struct AccountPage {
    chrome: Chrome,
    notice: Option<&'static str>,
    sessions: Vec<SessionLine>,
}

async fn account_page(
    state: &AppState,
    user: &CurrentUser,
    notice: Option<&'static str>,
) -> Result<Response, ApiError> {
    let current = match user.via {
        Via::Session(id) => Some(id),
        Via::Token { .. } => None,
    };
    let sessions = state
        .store
        .list_sessions(user.id)
        .await?
        .into_iter()
        .map(|s| SessionLine {
            id: s.id,
            created_at: s.created_at.to_rfc3339(),
            last_seen_at: s.last_seen_at.to_rfc3339(),
            from: [s.ip.unwrap_or_default(), s.user_agent.unwrap_or_default()]
                .join(" ")
                .trim()
                .to_owned(),
            current: Some(s.id) == current,
        })
        .collect();
    page(&AccountPage {
        chrome: chrome(state, user).await?,
        notice,
        sessions,
    })
}

/// The signed-in user's sessions and password form.
pub(super) async fn account(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Response, ApiError> {
    account_page(&state, &user, None).await
}

/// Signs one of the user's own sessions out.
pub(super) async fn revoke_session(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: SessionId = id.parse().map_err(|_| ApiError::not_found())?;
    state.store.revoke_session(user.id, id, &user.meta).await?;
    Ok(Redirect::to("/app/account").into_response())
}

/// The password form's fields.
#[derive(Deserialize)]
pub(super) struct PasswordForm {
    current_password: String,
    new_password: String,
}

/// Changes the password, as `POST /v1/me/password` does.
pub(super) async fn password(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(form): Form<PasswordForm>,
) -> Result<Response, ApiError> {
    let body = ChangePasswordIn {
        current_password: form.current_password,
        new_password: form.new_password,
    };
    let again = user.clone();
    change_password(State(state.clone()), user, AppJson(body)).await?;
    account_page(
        &state,
        &again,
        Some("Password changed; your other sessions are signed out."),
    )
    .await
}

/// One message of the development mailbox, with the links its body carries.
struct MailLine {
    to: String,
    subject: String,
    at: String,
    body: String,
    links: Vec<String>,
}

#[derive(Template)]
#[template(path = "console/mailbox.html")]
struct MailboxPage {
    chrome: Chrome,
    messages: Vec<MailLine>,
}

/// Development only, without `SMTP_URL`: the messages kept in the outbox, newest first, with
/// their links, so a new user can verify an address or accept an invitation without a mail
/// server. Anywhere else it does not exist (404).
pub(super) async fn mailbox(State(state): State<AppState>) -> Result<Response, ApiError> {
    let dev = state.config.mode == crate::config::Mode::Development;
    if !dev || state.config.auth.smtp_url.is_some() {
        return Err(ApiError::not_found());
    }
    let base = state
        .config
        .auth
        .public_base_url
        .trim_end_matches('/')
        .to_owned();
    let messages = state
        .store
        .unsent_emails(50)
        .await?
        .into_iter()
        .map(|m| MailLine {
            links: m
                .body
                .split_whitespace()
                .filter(|w| w.starts_with(&base))
                .map(str::to_owned)
                .collect(),
            to: m.recipient,
            subject: m.subject,
            at: m.created_at.to_rfc3339(),
            body: m.body,
        })
        .collect();
    page(&MailboxPage {
        chrome: Chrome::plain(&state),
        messages,
    })
}
