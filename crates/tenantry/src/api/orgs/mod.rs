//! Organization-scoped endpoints: `/v1/orgs/{org_id}/…`, every one behind
//! [`OrgMember`](crate::auth::OrgMember) and a permission check.

pub(crate) mod activity;
pub(crate) mod api_keys;
mod data;
pub(crate) mod invitations;
pub(crate) mod jobs;
pub(crate) mod members;
pub(crate) mod org;

pub(crate) use org::{parse_new_org, NewOrgIn};
pub(crate) mod roles;
pub(crate) mod usage;
pub(crate) mod workspaces;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::error::ApiError;
use crate::rbac::RoleRef;
use crate::state::AppState;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(org::permission_catalog))
        .routes(routes!(org::create_org, org::list_my_orgs))
        .routes(routes!(org::get_org, org::update_org, org::delete_org))
        .routes(routes!(org::change_plan))
        .routes(routes!(org::list_audit_events))
        .routes(routes!(activity::list_activities))
        .routes(routes!(activity::broadcast))
        .routes(routes!(
            workspaces::create_workspace,
            workspaces::list_workspaces
        ))
        .routes(routes!(
            workspaces::get_workspace,
            workspaces::update_workspace,
            workspaces::delete_workspace
        ))
        .routes(routes!(
            workspaces::set_workspace_role,
            workspaces::remove_workspace_role
        ))
        .routes(routes!(members::list_members))
        .routes(routes!(members::change_member_role, members::remove_member))
        .routes(routes!(roles::create_role, roles::list_roles))
        .routes(routes!(
            roles::get_role,
            roles::update_role,
            roles::delete_role
        ))
        .routes(routes!(
            invitations::create_invitation,
            invitations::list_invitations
        ))
        .routes(routes!(invitations::revoke_invitation))
        .routes(routes!(invitations::resend_invitation))
        .routes(routes!(invitations::accept_invitation))
        .routes(routes!(jobs::enqueue_job, jobs::list_jobs))
        .routes(routes!(jobs::get_job))
        .routes(routes!(jobs::cancel_job))
        .routes(routes!(jobs::retry_job))
        .routes(routes!(api_keys::create_api_key, api_keys::list_api_keys))
        .routes(routes!(api_keys::get_api_key, api_keys::revoke_api_key))
        .routes(routes!(api_keys::rotate_api_key))
        .routes(routes!(data::create_item, data::list_items))
        .routes(routes!(data::get_item, data::delete_item))
        .routes(routes!(usage::ingest_events))
        .routes(routes!(usage::get_usage))
}

/// Parses a role reference from input (422 on `field`).
pub(crate) fn parse_role(field: &str, raw: &str) -> Result<RoleRef, ApiError> {
    RoleRef::parse(raw).map_err(|m| ApiError::validation(field, m))
}
