//! The console's pages. Each handler takes the API's own extractors ([`CurrentUser`],
//! [`OrgMember`]) and calls the same handlers or store methods as the API, so the rules are
//! the API's.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::request::Parts;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use axum_extra::extract::CookieJar;
use serde::Deserialize;

use crate::api::auth::me::start_session;
use crate::api::auth::tokens::{authenticate, create_account, LoginIn, RegisterIn};
use crate::api::orgs::api_keys::{create_api_key, revoke_api_key, ApiKeyIn};
use crate::api::orgs::NewOrgIn;
use crate::auth::user::csrf_token;
use crate::auth::{CurrentUser, OrgMember, Via};
use crate::http::error::ApiError;
use crate::http::extract::AppJson;
use crate::http::meta::request_meta;
use crate::ids::{ApiKeyId, OrgId};
use crate::rbac::Permission;
use crate::state::AppState;
use crate::store::audit::AuditFilter;
use crate::store::identity::User;
use crate::store::orgs::Organization;

/// Renders a template as a page.
fn page(template: &impl Template) -> Result<Response, ApiError> {
    let html = template.render().map_err(|e| ApiError::internal(&e))?;
    Ok(Html(html).into_response())
}

/// The signed-in user's name and CSRF token, for the page chrome.
#[derive(Default)]
pub(super) struct Chrome {
    pub(super) signed_in: Option<String>,
    pub(super) csrf: String,
}

async fn chrome(state: &AppState, user: &CurrentUser) -> Result<Chrome, ApiError> {
    let me: User = state.store.get_user(user.id).await?;
    let csrf = match user.via {
        Via::Session(session) => csrf_token(state.config.session_secret.expose(), session),
        // A bearer token needs no CSRF token.
        Via::Token { .. } => String::new(),
    };
    Ok(Chrome {
        signed_in: Some(me.email),
        csrf,
    })
}

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    chrome: Chrome,
    error: Option<String>,
    email: String,
}

/// The sign-in form.
pub(super) async fn login_page() -> Result<Response, ApiError> {
    page(&LoginPage {
        chrome: Chrome::default(),
        error: None,
        email: String::new(),
    })
}

/// The sign-in form's fields.
#[derive(Deserialize)]
pub(super) struct LoginForm {
    email: String,
    password: String,
}

/// Signs in with a cookie session, exactly as `POST /v1/auth/sessions`.
pub(super) async fn login(
    State(state): State<AppState>,
    parts: Parts,
    jar: CookieJar,
    Form(form): Form<LoginForm>,
) -> Result<Response, ApiError> {
    let meta = request_meta(&parts);
    let body = LoginIn {
        email: form.email.clone(),
        password: form.password,
    };
    match authenticate(&state, body, "cookie", &meta).await {
        Ok(user) => {
            let (jar, _) =
                start_session(&state, jar, user.id, &form.email, "cookie", &meta).await?;
            Ok((jar, Redirect::to("/app")).into_response())
        }
        Err(err) if err.status() == axum::http::StatusCode::UNAUTHORIZED => {
            let mut response = page(&LoginPage {
                chrome: Chrome::default(),
                error: Some("Email or password is incorrect.".to_owned()),
                email: form.email,
            })?;
            *response.status_mut() = axum::http::StatusCode::UNAUTHORIZED;
            Ok(response)
        }
        Err(err) => Err(err),
    }
}

#[derive(Template)]
#[template(path = "console/signup.html")]
struct SignupPage {
    chrome: Chrome,
    error: Option<String>,
    name: String,
    email: String,
    org_name: String,
    org_slug: String,
}

/// The sign-up form's fields.
#[derive(Deserialize)]
pub(super) struct SignupForm {
    name: String,
    email: String,
    password: String,
    #[serde(default)]
    org_name: String,
    #[serde(default)]
    org_slug: String,
}

/// The sign-up form.
pub(super) async fn signup_page() -> Result<Response, ApiError> {
    page(&SignupPage {
        chrome: Chrome::default(),
        error: None,
        name: String::new(),
        email: String::new(),
        org_name: String::new(),
        org_slug: String::new(),
    })
}

/// Creates the account (and its first organization) as `POST /v1/auth/register` does, then
/// starts a cookie session.
pub(super) async fn signup(
    State(state): State<AppState>,
    parts: Parts,
    jar: CookieJar,
    Form(form): Form<SignupForm>,
) -> Result<Response, ApiError> {
    let meta = request_meta(&parts);
    let org =
        (!form.org_name.trim().is_empty() || !form.org_slug.trim().is_empty()).then(|| NewOrgIn {
            name: form.org_name.clone(),
            slug: form.org_slug.clone(),
        });
    let body = RegisterIn {
        email: form.email.clone(),
        password: form.password,
        name: form.name.clone(),
        org,
        invitation_token: None,
    };
    match create_account(&state, body, &meta).await {
        Ok((user, org)) => {
            let (jar, _) =
                start_session(&state, jar, user.id, &user.email, "register", &meta).await?;
            let to = org.map_or("/app".to_owned(), |org| format!("/app/orgs/{org}"));
            Ok((jar, Redirect::to(&to)).into_response())
        }
        // A refused field is shown on the form, with what was typed (never the password).
        Err(err) if err.status().is_client_error() && err.status().as_u16() != 429 => {
            let problem = err.to_problem(None);
            let mut response = page(&SignupPage {
                chrome: Chrome::default(),
                error: Some(problem.detail.unwrap_or(problem.title)),
                name: form.name,
                email: form.email,
                org_name: form.org_name,
                org_slug: form.org_slug,
            })?;
            *response.status_mut() = err.status();
            Ok(response)
        }
        Err(err) => Err(err),
    }
}

/// Ends the cookie session, as `POST /v1/auth/logout` does.
pub(super) async fn logout(
    State(state): State<AppState>,
    user: CurrentUser,
    jar: CookieJar,
) -> Result<Response, ApiError> {
    if let Via::Session(session) = user.via {
        state
            .store
            .logout_session(user.id, session, &user.meta)
            .await?;
    }
    let jar = jar.remove(crate::auth::credentials::session_cookie(
        &state.config.auth,
        String::new(),
    ));
    Ok((jar, Redirect::to("/app/login")).into_response())
}

/// One organization of the home page.
struct OrgLine {
    id: OrgId,
    name: String,
    slug: String,
    role: String,
}

#[derive(Template)]
#[template(path = "console/home.html")]
struct HomePage {
    chrome: Chrome,
    orgs: Vec<OrgLine>,
}

/// The organization switcher: my organizations, and a form to create one.
pub(super) async fn home(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Response, ApiError> {
    let chrome = chrome(&state, &user).await?;
    let orgs = state
        .store
        .my_orgs(user.id)
        .await?
        .into_iter()
        .map(|m| OrgLine {
            id: m.org.id,
            name: m.org.name,
            slug: m.org.slug,
            role: m.role,
        })
        .collect();
    page(&HomePage { chrome, orgs })
}

/// The new organization form's fields.
#[derive(Deserialize)]
pub(super) struct NewOrgForm {
    name: String,
    slug: String,
}

/// Creates an organization, as `POST /v1/orgs` does.
pub(super) async fn create_org(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(form): Form<NewOrgForm>,
) -> Result<Response, ApiError> {
    let new = crate::api::orgs::parse_new_org(&NewOrgIn {
        name: form.name,
        slug: form.slug,
    })?;
    let org = state
        .store
        .create_org_for_user(user.id, new, &user.meta)
        .await?;
    Ok(Redirect::to(&format!("/app/orgs/{}", org.id)).into_response())
}

/// Which sections of an organization the member may open: the others are not linked.
struct Nav {
    members: bool,
    keys: bool,
    audit: bool,
}

/// What every organization page shows around its content.
struct OrgView {
    org: Organization,
    nav: Nav,
}

async fn org_chrome(
    state: &AppState,
    user: &CurrentUser,
    member: &OrgMember,
) -> Result<(Chrome, OrgView), ApiError> {
    let chrome = chrome(state, user).await?;
    member.require(Permission::OrgRead)?;
    let org = state.store.get_org(&member.ctx).await?;
    let holds = |p: Permission| member.permissions.contains(&p);
    let nav = Nav {
        members: holds(Permission::MembersRead),
        keys: holds(Permission::ApiKeysRead),
        audit: holds(Permission::AuditRead),
    };
    Ok((chrome, OrgView { org, nav }))
}

#[derive(Template)]
#[template(path = "console/org.html")]
struct OrgPage {
    chrome: Chrome,
    view: OrgView,
    tab: &'static str,
}

/// An organization's overview (`org:read`).
pub(super) async fn org(
    State(state): State<AppState>,
    user: CurrentUser,
    member: OrgMember,
) -> Result<Response, ApiError> {
    let (chrome, view) = org_chrome(&state, &user, &member).await?;
    page(&OrgPage {
        chrome,
        view,
        tab: "overview",
    })
}

#[derive(Template)]
#[template(path = "console/members.html")]
struct MembersPage {
    chrome: Chrome,
    view: OrgView,
    tab: &'static str,
    members: Vec<crate::store::members::Member>,
}

/// The members (`members:read`).
pub(super) async fn members(
    State(state): State<AppState>,
    user: CurrentUser,
    member: OrgMember,
) -> Result<Response, ApiError> {
    let (chrome, view) = org_chrome(&state, &user, &member).await?;
    member.require(Permission::MembersRead)?;
    let members = state.store.list_members(&member.ctx).await?;
    page(&MembersPage {
        chrome,
        view,
        tab: "members",
        members,
    })
}

/// One key of the keys page.
struct KeyLine {
    id: ApiKeyId,
    name: String,
    prefix: String,
    scopes: String,
    last_used: String,
    status: &'static str,
    active: bool,
}

#[derive(Template)]
#[template(path = "console/keys.html")]
struct KeysPage {
    chrome: Chrome,
    view: OrgView,
    tab: &'static str,
    keys: Vec<KeyLine>,
    can_write: bool,
    grantable: Vec<&'static str>,
    new_secret: Option<String>,
}

async fn keys_page(
    state: &AppState,
    user: &CurrentUser,
    member: &OrgMember,
    new_secret: Option<String>,
) -> Result<Response, ApiError> {
    let (chrome, view) = org_chrome(state, user, member).await?;
    member.require(Permission::ApiKeysRead)?;
    let at = crate::store::now();
    let keys = state
        .store
        .list_api_keys(&member.ctx)
        .await?
        .into_iter()
        .map(|k| {
            let status = if k.revoked_at.is_some() {
                "revoked"
            } else if k.expires_at.is_some_and(|e| e <= at) {
                "expired"
            } else {
                "active"
            };
            KeyLine {
                id: k.id,
                name: k.name,
                prefix: k.prefix,
                scopes: k
                    .scopes
                    .iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                last_used: k
                    .last_used_at
                    .map_or("never".to_owned(), |t| t.to_rfc3339()),
                status,
                active: status == "active",
            }
        })
        .collect();
    // Only what the caller holds can be granted to a key.
    let grantable = Permission::ALL
        .iter()
        .filter(|p| member.permissions.contains(p))
        .map(|p| p.as_str())
        .collect();
    page(&KeysPage {
        chrome,
        view,
        tab: "keys",
        keys,
        can_write: member.permissions.contains(&Permission::ApiKeysWrite),
        grantable,
        new_secret,
    })
}

/// The API keys (`api_keys:read`).
pub(super) async fn keys(
    State(state): State<AppState>,
    user: CurrentUser,
    member: OrgMember,
) -> Result<Response, ApiError> {
    keys_page(&state, &user, &member, None).await
}

/// The new key form's fields (`scopes` repeats, one per checked box).
#[derive(Deserialize)]
pub(super) struct NewKeyForm {
    name: String,
    #[serde(default)]
    expires_in_days: String,
}

/// Creates a key through the API's own handler, then shows the keys with the new secret,
/// once.
pub(super) async fn create_key(
    State(state): State<AppState>,
    user: CurrentUser,
    member: OrgMember,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let form: NewKeyForm = serde_urlencoded_form(&body)?;
    let scopes = url::form_urlencoded::parse(&body)
        .filter(|(name, _)| name == "scopes")
        .map(|(_, value)| value.into_owned())
        .collect();
    let expires_at = match form.expires_in_days.trim() {
        "" => None,
        days => {
            let days: i64 = days
                .parse()
                .ok()
                .filter(|d| (1..=3650).contains(d))
                .ok_or_else(|| {
                    ApiError::validation("expires_in_days", "a number of days from 1 to 3650")
                })?;
            Some(crate::store::now() + chrono::Duration::days(days))
        }
    };
    let input = ApiKeyIn {
        name: form.name,
        scopes,
        expires_at,
        rate_limit: None,
    };
    let (_, axum::Json(created)) =
        create_api_key(State(state.clone()), member.clone(), AppJson(input)).await?;
    keys_page(&state, &user, &member, Some(created.secret)).await
}

/// Revokes a key through the API's own handler.
pub(super) async fn revoke_key(
    State(state): State<AppState>,
    member: OrgMember,
    Path((org, key)): Path<(OrgId, String)>,
) -> Result<Response, ApiError> {
    let key: ApiKeyId = key.parse().map_err(|_| ApiError::not_found())?;
    let axum::Json(_revoked) =
        revoke_api_key(State(state), member, crate::http::extract::OrgPath(key)).await?;
    Ok(Redirect::to(&format!("/app/orgs/{org}/api-keys")).into_response())
}

/// One record of the audit page.
struct AuditLine {
    seq: i64,
    at: String,
    actor: String,
    action: String,
    target: String,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    chrome: Chrome,
    view: OrgView,
    tab: &'static str,
    events: Vec<AuditLine>,
    next_after: Option<i64>,
}

/// The audit page's query.
#[derive(Deserialize)]
pub(super) struct AuditPageQuery {
    after: Option<i64>,
}

/// Records shown per audit page.
const AUDIT_PAGE: u32 = 50;

/// The audit log (`audit:read`), oldest first, 50 at a time.
pub(super) async fn audit(
    State(state): State<AppState>,
    user: CurrentUser,
    member: OrgMember,
    Query(q): Query<AuditPageQuery>,
) -> Result<Response, ApiError> {
    let (chrome, view) = org_chrome(&state, &user, &member).await?;
    member.require(Permission::AuditRead)?;
    let filter = AuditFilter {
        action: None,
        after_seq: q.after,
        limit: Some(AUDIT_PAGE),
    };
    let events = state.store.list_audit_events(&member.ctx, &filter).await?;
    let full = events.len() == usize::try_from(AUDIT_PAGE).unwrap_or(usize::MAX);
    let next_after = full.then(|| events.last().map(|e| e.seq)).flatten();
    let events = events
        .into_iter()
        .map(|e| AuditLine {
            seq: e.seq,
            at: e.created_at.to_rfc3339(),
            actor: match e.actor.id {
                Some(id) => format!("{} {id}", e.actor.kind.as_str()),
                None => e.actor.kind.as_str().to_owned(),
            },
            action: e.action,
            target: match (e.target_type, e.target_id) {
                (Some(kind), Some(id)) => format!("{kind} {id}"),
                (Some(kind), None) => kind,
                _ => String::new(),
            },
        })
        .collect();
    page(&AuditPage {
        chrome,
        view,
        tab: "audit",
        events,
        next_after,
    })
}

/// Decodes a form body into `T`, refusing it like the API refuses bad JSON.
fn serde_urlencoded_form<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(body)
        .filter(|(name, _)| name != "scopes" && name != "csrf_token")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let value = serde_json::Value::Object(
        pairs
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect(),
    );
    serde_json::from_value(value).map_err(|e| ApiError::validation("form", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_their_fields_and_ignore_the_token() {
        let form: NewKeyForm =
            serde_urlencoded_form(b"csrf_token=x&name=ci+key&scopes=data%3Aread&expires_in_days=")
                .unwrap();
        assert_eq!(form.name, "ci key");
        assert_eq!(form.expires_in_days, "");
        assert!(serde_urlencoded_form::<NewKeyForm>(b"expires_in_days=3").is_err());
    }
}
