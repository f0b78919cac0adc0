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
use crate::api::orgs::api_keys::{create_api_key, revoke_api_key, rotate_api_key, ApiKeyIn};
use crate::api::orgs::invitations::{
    create_invitation, resend_invitation, revoke_invitation, InvitationIn,
};
use crate::api::orgs::members::{change_member_role, remove_member};
use crate::api::orgs::org::{delete_org, update_org, OrgPatch};
use crate::api::orgs::roles::{create_role, delete_role, update_role, RoleDefIn, RolePatch};
use crate::api::orgs::workspaces::RoleIn;
use crate::api::orgs::workspaces::{create_workspace, delete_workspace, WorkspaceIn};
use crate::api::orgs::NewOrgIn;
use crate::auth::user::csrf_token;
use crate::auth::{CurrentUser, OrgMember, Via};
use crate::http::error::ApiError;
use crate::http::extract::{AppJson, OrgPath};
use crate::http::meta::request_meta;
use crate::ids::{ApiKeyId, InvitationId, OrgId, UserId, WorkspaceId};
use crate::rbac::Permission;
use crate::state::AppState;
use crate::store::identity::User;
use crate::store::orgs::Organization;

/// Renders a template as a page.
pub(super) fn page(template: &impl Template) -> Result<Response, ApiError> {
    let html = template.render().map_err(|e| ApiError::internal(&e))?;
    Ok(Html(html).into_response())
}

/// The signed-in user's name and CSRF token, for the page chrome, and whether this is a
/// demo deployment (a banner says so on every page).
pub(super) struct Chrome {
    pub(super) signed_in: Option<String>,
    pub(super) csrf: String,
    pub(super) demo: bool,
}

impl Chrome {
    /// The chrome of a page without a signed-in user.
    pub(super) fn plain(state: &AppState) -> Self {
        Self {
            signed_in: None,
            csrf: String::new(),
            demo: state.config.demo_mode,
        }
    }
}

pub(super) async fn chrome(state: &AppState, user: &CurrentUser) -> Result<Chrome, ApiError> {
    let me: User = state.store.get_user(user.id).await?;
    let csrf = match user.via {
        Via::Session(session) => csrf_token(state.config.session_secret.expose(), session),
        // A bearer token needs no CSRF token.
        Via::Token { .. } => String::new(),
    };
    Ok(Chrome {
        signed_in: Some(me.email),
        csrf,
        demo: state.config.demo_mode,
    })
}

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    chrome: Chrome,
    error: Option<String>,
    email: String,
    next: String,
    signup_query: String,
}

/// Where to go after signing in: a path of this site only.
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') => p.to_owned(),
        _ => "/app".to_owned(),
    }
}

/// The sign-in page's query.
#[derive(Deserialize)]
pub(super) struct LoginQuery {
    next: Option<String>,
    invitation: Option<String>,
}

/// The sign-in form.
pub(super) async fn login_page(
    State(state): State<AppState>,
    Query(q): Query<LoginQuery>,
) -> Result<Response, ApiError> {
    page(&LoginPage {
        chrome: Chrome::plain(&state),
        error: None,
        email: String::new(),
        next: local_path(q.next.as_deref()),
        signup_query: invitation_query(q.invitation.as_deref()),
    })
}

/// `?invitation=<token>` for the sign-up link, when signing in for an invitation.
fn invitation_query(token: Option<&str>) -> String {
    token.map_or(String::new(), |t| {
        format!(
            "?invitation={}",
            url::form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>()
        )
    })
}

/// The sign-in form's fields.
#[derive(Deserialize)]
pub(super) struct LoginForm {
    email: String,
    password: String,
    next: Option<String>,
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
                chrome: Chrome::plain(&state),
                error: Some("Email or password is incorrect.".to_owned()),
                email: form.email,
                next: local_path(form.next.as_deref()),
                signup_query: String::new(),
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
    invitation: String,
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
    #[serde(default)]
    invitation_token: String,
}

/// The sign-up page's query: the invitation it signs up for.
#[derive(Deserialize)]
pub(super) struct SignupQuery {
    invitation: Option<String>,
}

/// The sign-up form.
pub(super) async fn signup_page(
    State(state): State<AppState>,
    Query(q): Query<SignupQuery>,
) -> Result<Response, ApiError> {
    page(&SignupPage {
        chrome: Chrome::plain(&state),
        invitation: q.invitation.unwrap_or_default(),
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
        invitation_token: (!form.invitation_token.is_empty())
            .then(|| form.invitation_token.clone()),
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
                chrome: Chrome::plain(&state),
                invitation: form.invitation_token,
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
pub(super) struct Nav {
    pub(super) workspaces: bool,
    pub(super) usage: bool,
    pub(super) jobs: bool,
    pub(super) members: bool,
    pub(super) roles: bool,
    pub(super) keys: bool,
    pub(super) audit: bool,
    pub(super) billing: bool,
    pub(super) scim: bool,
}

/// What every organization page shows around its content.
pub(super) struct OrgView {
    pub(super) org: Organization,
    pub(super) nav: Nav,
}

pub(super) async fn org_chrome(
    state: &AppState,
    user: &CurrentUser,
    member: &OrgMember,
) -> Result<(Chrome, OrgView), ApiError> {
    let chrome = chrome(state, user).await?;
    member.require(Permission::OrgRead)?;
    let org = state.store.get_org(&member.ctx).await?;
    let holds = |p: Permission| member.permissions.contains(&p);
    let nav = Nav {
        workspaces: holds(Permission::WorkspacesRead),
        usage: holds(Permission::UsageRead),
        jobs: holds(Permission::JobsRead),
        members: holds(Permission::MembersRead),
        roles: holds(Permission::RolesRead),
        keys: holds(Permission::ApiKeysRead),
        audit: holds(Permission::AuditRead),
        billing: holds(Permission::BillingRead),
        scim: holds(Permission::ScimManage),
    };
    Ok((chrome, OrgView { org, nav }))
}

#[derive(Template)]
#[template(path = "console/org.html")]
struct OrgPage {
    chrome: Chrome,
    view: OrgView,
    tab: &'static str,
    can_update: bool,
    can_delete: bool,
    features: Vec<crate::features::FlagState>,
}

/// An organization's overview (`org:read`).
pub(super) async fn org(
    State(state): State<AppState>,
    user: CurrentUser,
    member: OrgMember,
) -> Result<Response, ApiError> {
    let (chrome, view) = org_chrome(&state, &user, &member).await?;
    page(&OrgPage {
        features: member.features.all(),
        chrome,
        view,
        tab: "overview",
        can_update: member.permissions.contains(&Permission::OrgUpdate),
        can_delete: member.permissions.contains(&Permission::OrgDelete),
    })
}

#[derive(Template)]
#[template(path = "console/members.html")]
struct MembersPage {
    chrome: Chrome,
    view: OrgView,
    tab: &'static str,
    members: Vec<MemberLine>,
    can_update: bool,
    can_invite: bool,
    invitations: Vec<crate::store::invitations::Invitation>,
    roles: Vec<RoleOption>,
    member_limit: Option<i64>,
    new_link: Option<String>,
}

/// The members (`members:read`), and the invitations for those who may invite.
pub(super) async fn members(
    State(state): State<AppState>,
    user: CurrentUser,
    member: OrgMember,
) -> Result<Response, ApiError> {
    members_page(&state, &user, &member, None).await
}

async fn members_page(
    state: &AppState,
    user: &CurrentUser,
    member: &OrgMember,
    new_link: Option<String>,
) -> Result<Response, ApiError> {
    let (chrome, view) = org_chrome(state, user, member).await?;
    member.require(Permission::MembersRead)?;
    let can_update = member.permissions.contains(&Permission::MembersUpdate);
    let can_remove = member.permissions.contains(&Permission::MembersRemove);
    let me = member.user_id();
    let choices = role_choices(state, member).await?;
    let options = |current: &str| role_options(&choices, current);
    let members = state
        .store
        .list_members(&member.ctx)
        .await?
        .into_iter()
        .map(|m| MemberLine {
            options: options(&m.role),
            removable: can_remove || Some(m.user_id) == me,
            user_id: m.user_id,
            name: m.name,
            email: m.email,
            role: m.role,
            joined_at: m.joined_at.to_rfc3339(),
        })
        .collect();
    let can_invite = member.permissions.contains(&Permission::MembersInvite);
    let invitations = if can_invite {
        state.store.list_invitations(&member.ctx).await?
    } else {
        Vec::new()
    };
    let member_limit = view.org.plan.member_limit();
    let roles = options("member");
    page(&MembersPage {
        chrome,
        view,
        tab: "members",
        members,
        can_update,
        can_invite,
        invitations,
        roles,
        member_limit,
        new_link,
    })
}

/// One member of the members page, with the roles the role form offers.
struct MemberLine {
    user_id: UserId,
    name: String,
    email: String,
    role: String,
    joined_at: String,
    options: Vec<RoleOption>,
    removable: bool,
}

/// The role form's field.
#[derive(Deserialize)]
pub(super) struct RoleForm {
    role: String,
}

/// Changes a member's role through the API's own handler.
pub(super) async fn change_role(
    State(state): State<AppState>,
    member: OrgMember,
    Path((org, user)): Path<(OrgId, String)>,
    Form(form): Form<RoleForm>,
) -> Result<Response, ApiError> {
    let user: UserId = user.parse().map_err(|_| ApiError::not_found())?;
    change_member_role(
        State(state),
        member,
        OrgPath(user),
        AppJson(RoleIn { role: form.role }),
    )
    .await?;
    Ok(Redirect::to(&format!("/app/orgs/{org}/members")).into_response())
}

/// Removes a member (or the caller leaving) through the API's own handler.
pub(super) async fn remove(
    State(state): State<AppState>,
    member: OrgMember,
    Path((org, user)): Path<(OrgId, String)>,
) -> Result<Response, ApiError> {
    let user: UserId = user.parse().map_err(|_| ApiError::not_found())?;
    let leaving = Some(user) == member.user_id();
    remove_member(State(state), member, OrgPath(user)).await?;
    let to = if leaving {
        "/app".to_owned()
    } else {
        format!("/app/orgs/{org}/members")
    };
    Ok(Redirect::to(&to).into_response())
}

/// Gives a key a new secret through the API's own handler (the previous one keeps working
/// for the default grace period); the new secret is shown once.
pub(super) async fn rotate_key(
    State(state): State<AppState>,
    user: CurrentUser,
    member: OrgMember,
    Path((_, key)): Path<(OrgId, String)>,
) -> Result<Response, ApiError> {
    let key: ApiKeyId = key.parse().map_err(|_| ApiError::not_found())?;
    let axum::Json(rotated) =
        rotate_api_key(State(state.clone()), member.clone(), OrgPath(key), None).await?;
    keys_page(&state, &user, &member, Some(rotated.secret)).await
}

/// A role a form can give: a built-in name or a custom role's id, with its label.
pub(super) struct RoleOption {
    pub(super) value: String,
    pub(super) label: String,
    pub(super) selected: bool,
}

/// The roles a member's forms offer: the built-in ones, and the custom roles when the
/// member may read them, as (value, label).
pub(super) async fn role_choices(
    state: &AppState,
    member: &OrgMember,
) -> Result<Vec<(String, String)>, ApiError> {
    let custom = if member.permissions.contains(&Permission::RolesRead) {
        state.store.list_roles(&member.ctx).await?
    } else {
        Vec::new()
    };
    Ok(crate::rbac::BuiltinRole::ALL
        .iter()
        .map(|r| (r.as_str().to_owned(), r.as_str().to_owned()))
        .chain(custom.iter().map(|r| (r.id.to_string(), r.name.clone())))
        .collect())
}

/// `choices` as a select's options, `current` selected.
pub(super) fn role_options(choices: &[(String, String)], current: &str) -> Vec<RoleOption> {
    choices
        .iter()
        .map(|(value, label)| RoleOption {
            selected: value == current,
            value: value.clone(),
            label: label.clone(),
        })
        .collect()
}

/// The invitation form's fields.
#[derive(Deserialize)]
pub(super) struct InviteForm {
    email: String,
    role: String,
}

/// Invites someone through the API's own handler; the link is shown once.
pub(super) async fn invite(
    State(state): State<AppState>,
    user: CurrentUser,
    member: OrgMember,
    Form(form): Form<InviteForm>,
) -> Result<Response, ApiError> {
    let input = InvitationIn {
        email: form.email,
        role: form.role,
    };
    let (_, axum::Json(created)) =
        create_invitation(State(state.clone()), member.clone(), AppJson(input)).await?;
    let link = invitation_link(&state, &created.token);
    members_page(&state, &user, &member, Some(link)).await
}

fn invitation_link(state: &AppState, token: &str) -> String {
    format!(
        "{}/accept-invitation?token={token}",
        state.config.auth.public_base_url.trim_end_matches('/')
    )
}

/// Re-sends an invitation (a new token) through the API's own handler.
pub(super) async fn resend_invite(
    State(state): State<AppState>,
    user: CurrentUser,
    member: OrgMember,
    Path((_, id)): Path<(OrgId, String)>,
) -> Result<Response, ApiError> {
    let id: InvitationId = id.parse().map_err(|_| ApiError::not_found())?;
    let axum::Json(created) =
        resend_invitation(State(state.clone()), member.clone(), OrgPath(id)).await?;
    let link = invitation_link(&state, &created.token);
    members_page(&state, &user, &member, Some(link)).await
}

/// Revokes a pending invitation through the API's own handler.
pub(super) async fn revoke_invite(
    State(state): State<AppState>,
    member: OrgMember,
    Path((org, id)): Path<(OrgId, String)>,
) -> Result<Response, ApiError> {
    let id: InvitationId = id.parse().map_err(|_| ApiError::not_found())?;
    revoke_invitation(State(state), member, OrgPath(id)).await?;
    Ok(Redirect::to(&format!("/app/orgs/{org}/members")).into_response())
}

/// The settings form's fields.
#[derive(Deserialize)]
pub(super) struct SettingsForm {
    name: String,
    slug: String,
}

/// Renames the organization or changes its slug through the API's own handler.
pub(super) async fn update_settings(
    State(state): State<AppState>,
    member: OrgMember,
    Form(form): Form<SettingsForm>,
) -> Result<Response, ApiError> {
    let patch = OrgPatch {
        name: Some(form.name),
        slug: Some(form.slug),
    };
    let axum::Json(org) = update_org(State(state), member, AppJson(patch)).await?;
    Ok(Redirect::to(&format!("/app/orgs/{}", org.id)).into_response())
}

/// The deletion form's confirmation.
#[derive(Deserialize)]
pub(super) struct DeleteForm {
    confirm: String,
}

/// Deletes the organization through the API's own handler, once its slug is typed.
pub(super) async fn delete(
    State(state): State<AppState>,
    member: OrgMember,
    Form(form): Form<DeleteForm>,
) -> Result<Response, ApiError> {
    member.require(Permission::OrgDelete)?;
    let org = state.store.get_org(&member.ctx).await?;
    if !form.confirm.trim().eq_ignore_ascii_case(&org.slug) {
        return Err(ApiError::validation(
            "confirm",
            "type the organization's slug to delete it",
        ));
    }
    delete_org(State(state), member).await?;
    Ok(Redirect::to("/app").into_response())
}

#[derive(Template)]
#[template(path = "console/workspaces.html")]
struct WorkspacesPage {
    chrome: Chrome,
    view: OrgView,
    tab: &'static str,
    workspaces: Vec<crate::store::workspaces::Workspace>,
    can_write: bool,
}

/// The workspaces (`workspaces:read`).
pub(super) async fn workspaces(
    State(state): State<AppState>,
    user: CurrentUser,
    member: OrgMember,
) -> Result<Response, ApiError> {
    let (chrome, view) = org_chrome(&state, &user, &member).await?;
    member.require(Permission::WorkspacesRead)?;
    let workspaces = state.store.list_workspaces(&member.ctx).await?;
    page(&WorkspacesPage {
        chrome,
        view,
        tab: "workspaces",
        workspaces,
        can_write: member.permissions.contains(&Permission::WorkspacesWrite),
    })
}

/// Creates a workspace through the API's own handler.
pub(super) async fn create_workspace_form(
    State(state): State<AppState>,
    member: OrgMember,
    Form(form): Form<SettingsForm>,
) -> Result<Response, ApiError> {
    let org = member.ctx.org_id();
    let input = WorkspaceIn {
        name: form.name,
        slug: form.slug,
    };
    let (_, axum::Json(_created)) = create_workspace(State(state), member, AppJson(input)).await?;
    Ok(Redirect::to(&format!("/app/orgs/{org}/workspaces")).into_response())
}

/// Deletes a workspace through the API's own handler.
pub(super) async fn delete_workspace_form(
    State(state): State<AppState>,
    member: OrgMember,
    Path((org, id)): Path<(OrgId, String)>,
) -> Result<Response, ApiError> {
    let id: WorkspaceId = id.parse().map_err(|_| ApiError::not_found())?;
    delete_workspace(State(state), member, OrgPath(id)).await?;
    Ok(Redirect::to(&format!("/app/orgs/{org}/workspaces")).into_response())
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
    let form: NewKeyForm = serde_urlencoded_form(&body, "scopes")?;
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
    let axum::Json(_revoked) = revoke_api_key(State(state), member, OrgPath(key)).await?;
    Ok(Redirect::to(&format!("/app/orgs/{org}/api-keys")).into_response())
}

/// One permission of the role form.
struct PermissionOption {
    name: &'static str,
    description: &'static str,
    checked: bool,
}

#[derive(Template)]
#[template(path = "console/roles.html")]
struct RolesPage {
    chrome: Chrome,
    view: OrgView,
    tab: &'static str,
    roles: Vec<RoleLine>,
    can_write: bool,
    catalog: Vec<PermissionOption>,
}

/// One custom role of the roles page.
struct RoleLine {
    id: crate::ids::RoleId,
    name: String,
    description: String,
    permissions: String,
}

/// The custom roles (`roles:read`), and a form building one from the permission catalog
/// (`roles:write`; only permissions the caller holds).
pub(super) async fn roles(
    State(state): State<AppState>,
    user: CurrentUser,
    member: OrgMember,
) -> Result<Response, ApiError> {
    let (chrome, view) = org_chrome(&state, &user, &member).await?;
    member.require(Permission::RolesRead)?;
    let roles = state
        .store
        .list_roles(&member.ctx)
        .await?
        .into_iter()
        .map(|r| RoleLine {
            id: r.id,
            name: r.name,
            description: r.description,
            permissions: r
                .permissions
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect();
    let catalog = Permission::ALL
        .iter()
        .filter(|p| member.permissions.contains(p))
        .map(|p| PermissionOption {
            name: p.as_str(),
            description: p.description(),
            checked: false,
        })
        .collect();
    page(&RolesPage {
        chrome,
        view,
        tab: "roles",
        roles,
        can_write: member.permissions.contains(&Permission::RolesWrite),
        catalog,
    })
}

/// The role form's fields (`permissions` repeats, one per checked box).
#[derive(Deserialize)]
pub(super) struct NewRoleForm {
    name: String,
    #[serde(default)]
    description: String,
}

/// Creates a custom role through the API's own handler.
pub(super) async fn create_role_form(
    State(state): State<AppState>,
    member: OrgMember,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let org = member.ctx.org_id();
    let form: NewRoleForm = serde_urlencoded_form(&body, "permissions")?;
    let permissions = url::form_urlencoded::parse(&body)
        .filter(|(name, _)| name == "permissions")
        .map(|(_, value)| value.into_owned())
        .collect();
    let input = RoleDefIn {
        name: form.name,
        description: form.description,
        permissions,
    };
    let (_, axum::Json(_role)) = create_role(State(state), member, AppJson(input)).await?;
    Ok(Redirect::to(&format!("/app/orgs/{org}/roles")).into_response())
}

#[derive(Template)]
#[template(path = "console/role.html")]
struct RolePage {
    chrome: Chrome,
    view: OrgView,
    tab: &'static str,
    role: crate::store::roles::Role,
    can_write: bool,
    catalog: Vec<PermissionOption>,
}

/// One custom role, and the form editing it (`roles:read`; `roles:write`). The catalog
/// offers the permissions the editor holds; a permission of the role the editor does not
/// hold is shown, and the API refuses to grant it again.
pub(super) async fn role(
    State(state): State<AppState>,
    user: CurrentUser,
    member: OrgMember,
    Path((_, id)): Path<(OrgId, String)>,
) -> Result<Response, ApiError> {
    let id: crate::ids::RoleId = id.parse().map_err(|_| ApiError::not_found())?;
    let (chrome, view) = org_chrome(&state, &user, &member).await?;
    member.require(Permission::RolesRead)?;
    let role = state.store.get_role(&member.ctx, id).await?;
    let catalog = Permission::ALL
        .iter()
        .filter(|p| member.permissions.contains(p) || role.permissions.contains(p))
        .map(|p| PermissionOption {
            name: p.as_str(),
            description: p.description(),
            checked: role.permissions.contains(p),
        })
        .collect();
    page(&RolePage {
        chrome,
        view,
        tab: "roles",
        role,
        can_write: member.permissions.contains(&Permission::RolesWrite),
        catalog,
    })
}

/// Saves a custom role through the API's own handler.
pub(super) async fn update_role_form(
    State(state): State<AppState>,
    member: OrgMember,
    Path((org, id)): Path<(OrgId, String)>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let id: crate::ids::RoleId = id.parse().map_err(|_| ApiError::not_found())?;
    let form: NewRoleForm = serde_urlencoded_form(&body, "permissions")?;
    let permissions = url::form_urlencoded::parse(&body)
        .filter(|(name, _)| name == "permissions")
        .map(|(_, value)| value.into_owned())
        .collect();
    let patch = RolePatch {
        name: Some(form.name),
        description: Some(form.description),
        permissions: Some(permissions),
    };
    let axum::Json(_role) = update_role(State(state), member, OrgPath(id), AppJson(patch)).await?;
    Ok(Redirect::to(&format!("/app/orgs/{org}/roles/{id}")).into_response())
}

/// Deletes a custom role through the API's own handler (refused while it is in use).
pub(super) async fn delete_role_form(
    State(state): State<AppState>,
    member: OrgMember,
    Path((org, id)): Path<(OrgId, String)>,
) -> Result<Response, ApiError> {
    let id: crate::ids::RoleId = id.parse().map_err(|_| ApiError::not_found())?;
    delete_role(State(state), member, OrgPath(id)).await?;
    Ok(Redirect::to(&format!("/app/orgs/{org}/roles")).into_response())
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
    q: AuditPageQuery,
    /// The page's filters as a query (for the next page).
    page_filters: String,
    /// The same filters in the API's terms (for the export links).
    api_filters: String,
    next_cursor: Option<i64>,
    can_export: bool,
}

/// The audit page's query: the API's filters, days for the time range.
#[derive(Clone, Default, Deserialize)]
#[serde(default)]
pub(super) struct AuditPageQuery {
    cursor: Option<i64>,
    action: String,
    actor_user_id: String,
    target_type: String,
    target_id: String,
    /// First day (YYYY-MM-DD, UTC).
    from: String,
    /// Last day (YYYY-MM-DD, UTC), included.
    to: String,
}

/// Records shown per audit page.
const AUDIT_PAGE: u32 = 50;

impl AuditPageQuery {
    /// The API query these filters make (days become RFC 3339 times).
    fn api_query(&self) -> Result<crate::api::audit::AuditQuery, ApiError> {
        let text = |v: &str| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
        let day = |field: &str,
                   v: &str,
                   end: bool|
         -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
            let Some(v) = text(v) else { return Ok(None) };
            let date = chrono::NaiveDate::parse_from_str(&v, "%Y-%m-%d")
                .map_err(|_| ApiError::validation(field, "must be a day (YYYY-MM-DD)"))?;
            let time = if end {
                date.and_hms_micro_opt(23, 59, 59, 999_999)
            } else {
                date.and_hms_opt(0, 0, 0)
            };
            Ok(time.map(|t| t.and_utc()))
        };
        Ok(crate::api::audit::AuditQuery::filters(
            text(&self.action),
            text(&self.actor_user_id),
            text(&self.target_type),
            text(&self.target_id),
            day("from", &self.from, false)?,
            day("to", &self.to, true)?,
        ))
    }

    /// The filters as an URL query (values encoded), without the cursor.
    fn encoded(&self) -> String {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("action", &self.action),
            ("actor_user_id", &self.actor_user_id),
            ("target_type", &self.target_type),
            ("target_id", &self.target_id),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if !value.trim().is_empty() {
                out.append_pair(name, value.trim());
            }
        }
        out.finish()
    }
}

/// The audit log (`audit:read`), newest first, 50 at a time, with the API's filters and
/// links to export what they select (`audit:export`).
pub(super) async fn audit(
    State(state): State<AppState>,
    user: CurrentUser,
    member: OrgMember,
    Query(q): Query<AuditPageQuery>,
) -> Result<Response, ApiError> {
    let (chrome, view) = org_chrome(&state, &user, &member).await?;
    member.require(Permission::AuditRead)?;
    let request = crate::api::audit::AuditRequest::try_from(q.api_query()?)?;
    let filter = crate::store::audit::AuditFilter {
        cursor: q.cursor,
        limit: Some(AUDIT_PAGE),
        ..request.filter
    };
    let events = state.store.list_audit_events(&member.ctx, &filter).await?;
    let full = events.len() == usize::try_from(AUDIT_PAGE).unwrap_or(usize::MAX);
    let next_cursor = full.then(|| events.last().map(|e| e.seq)).flatten();
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
    let api_filters = export_filters(&q)?;
    page(&AuditPage {
        chrome,
        view,
        tab: "audit",
        events,
        page_filters: q.encoded(),
        api_filters,
        next_cursor,
        can_export: member.permissions.contains(&Permission::AuditExport)
            && member.features.enabled(crate::features::Flag::AuditExport),
        q,
    })
}

/// The filters in the API's own terms, for the export links.
fn export_filters(q: &AuditPageQuery) -> Result<String, ApiError> {
    let api = q.api_query()?;
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in api.pairs() {
        out.append_pair(name, &value);
    }
    Ok(out.finish())
}

/// Decodes a form body into `T` (all but the `repeated` field, which the caller collects),
/// refusing it like the API refuses bad JSON.
fn serde_urlencoded_form<T: serde::de::DeserializeOwned>(
    body: &[u8],
    repeated: &str,
) -> Result<T, ApiError> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(body)
        .filter(|(name, _)| name != repeated && name != "csrf_token")
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
        let form: NewKeyForm = serde_urlencoded_form(
            b"csrf_token=x&name=ci+key&scopes=data%3Aread&expires_in_days=",
            "scopes",
        )
        .unwrap();
        assert_eq!(form.name, "ci key");
        assert_eq!(form.expires_in_days, "");
        assert!(serde_urlencoded_form::<NewKeyForm>(b"expires_in_days=3", "scopes").is_err());
    }
}
