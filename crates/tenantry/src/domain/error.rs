//! [`DomainError`]: a rule of the domain refused the change. Each variant carries its
//! stable code and the human detail together; HTTP answers it as 403 or 409.

use crate::rbac::{Permission, Plan};

/// Whether a refusal is about the caller (403) or about the current state (409).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The caller may not do this.
    Forbidden,
    /// The current state does not allow it.
    Conflict,
}

/// What kind of grant exceeded the grantor's own permissions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// A scope of a new API key.
    KeyScope,
    /// A permission of a custom role.
    RolePermission,
    /// A role given to a member, an invitee or a workspace member.
    Role,
    /// An existing key being managed (rotated, revoked).
    ManagedKey,
}

/// A rule of the domain refused the change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The slug is already in use.
    #[error("slug taken")]
    SlugTaken,
    /// An account with this email already exists.
    #[error("email taken")]
    EmailTaken,
    /// The name is already in use.
    #[error("name taken")]
    NameTaken,
    /// The person is already a member.
    #[error("already a member")]
    AlreadyMember,
    /// A pending invitation for the email exists.
    #[error("already invited")]
    AlreadyInvited,
    /// The invitation was accepted or revoked.
    #[error("invitation not pending")]
    InvitationNotPending,
    /// The invitation was sent to another address.
    #[error("invitation email mismatch")]
    InvitationEmailMismatch,
    /// An organization keeps at least one owner.
    #[error("last owner")]
    LastOwner,
    /// Only an owner changes, grants or removes the owner role.
    #[error("owner required")]
    OwnerRequired,
    /// Members or invitations still use the custom role.
    #[error("role in use")]
    RoleInUse,
    /// The plan allows no more members.
    #[error("plan limit reached")]
    PlanLimitReached,
    /// The organization has more members than the new plan allows.
    #[error("plan seats exceeded")]
    PlanSeatsExceeded {
        /// Members now.
        members: i64,
        /// The plan asked for.
        plan: Plan,
        /// Its member limit.
        limit: i64,
    },
    /// A grant beyond the grantor's own permissions.
    #[error("permission not held: {permission:?}")]
    NotHeld {
        /// What was being granted.
        grant: Grant,
        /// The first permission not held (none for a role as a whole).
        permission: Option<Permission>,
    },
    /// The address is already verified.
    #[error("already verified")]
    AlreadyVerified,
    /// In production, plans change through billing or the operator API.
    #[error("plan change operator only")]
    PlanChangeOperatorOnly,
    /// The operator has suspended the organization.
    #[error("org suspended")]
    OrgSuspended,
    /// `DEMO_MODE` is on: destructive actions are refused.
    #[error("demo mode")]
    DemoMode,
    /// The job is not in a state that allows this.
    #[error("job state")]
    JobState,
    /// The API key is revoked or expired.
    #[error("api key inactive")]
    ApiKeyInactive,
    /// A generated key prefix collided (retry).
    #[error("api key prefix taken")]
    ApiKeyPrefixTaken,
    /// A request with the Idempotency-Key is in flight, or ran without a recorded response.
    #[error("idempotency key in use")]
    IdempotencyKeyInUse,
    /// No billing provider is configured (or not the part this needs).
    #[error("billing not configured")]
    BillingNotConfigured(&'static str),
    /// With a billing provider, the plan follows the subscription.
    #[error("plan managed by billing")]
    PlanManagedByBilling,
    /// The organization already pays for a subscription.
    #[error("subscription exists")]
    SubscriptionExists,
    /// The organization has no customer at the billing provider yet.
    #[error("no billing customer")]
    NoBillingCustomer,
    /// The provider's customer belongs to another organization.
    #[error("billing customer taken")]
    BillingCustomerTaken,
    /// The resource changed since the version the caller named (`If-Match`).
    #[error("version mismatch")]
    VersionMismatch,
}

impl DomainError {
    /// The stable code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::SlugTaken => "slug_taken",
            Self::EmailTaken => "email_taken",
            Self::NameTaken => "name_taken",
            Self::AlreadyMember => "already_member",
            Self::AlreadyInvited => "already_invited",
            Self::InvitationNotPending => "invitation_not_pending",
            Self::InvitationEmailMismatch => "invitation_email_mismatch",
            Self::LastOwner => "last_owner",
            Self::OwnerRequired => "owner_required",
            Self::RoleInUse => "role_in_use",
            Self::PlanLimitReached => "plan_limit_reached",
            Self::PlanSeatsExceeded { .. } => "plan_seats_exceeded",
            Self::NotHeld { .. } => "forbidden",
            Self::AlreadyVerified => "already_verified",
            Self::PlanChangeOperatorOnly => "plan_change_operator_only",
            Self::DemoMode => "demo_mode",
            Self::OrgSuspended => "org_suspended",
            Self::JobState => "job_state",
            Self::ApiKeyInactive => "api_key_inactive",
            Self::ApiKeyPrefixTaken => "api_key_prefix_taken",
            Self::IdempotencyKeyInUse => "idempotency_key_in_use",
            Self::BillingNotConfigured(_) => "billing_not_configured",
            Self::PlanManagedByBilling => "plan_managed_by_billing",
            Self::SubscriptionExists => "subscription_exists",
            Self::NoBillingCustomer => "no_billing_customer",
            Self::BillingCustomerTaken => "billing_customer_taken",
            Self::VersionMismatch => "version_mismatch",
        }
    }

    /// About the caller (403) or the state (409).
    pub fn kind(&self) -> Kind {
        match self {
            Self::InvitationEmailMismatch
            | Self::OwnerRequired
            | Self::PlanLimitReached
            | Self::PlanChangeOperatorOnly
            | Self::DemoMode
            | Self::OrgSuspended
            | Self::NotHeld { .. } => Kind::Forbidden,
            _ => Kind::Conflict,
        }
    }

    /// The human explanation.
    pub fn detail(&self) -> String {
        match self {
            Self::SlugTaken => "The slug is already in use.".into(),
            Self::EmailTaken => "An account with this email already exists.".into(),
            Self::NameTaken => "The name is already in use.".into(),
            Self::AlreadyMember => "This person is already a member.".into(),
            Self::AlreadyInvited => {
                "A pending invitation for this email exists; resend it instead.".into()
            }
            Self::InvitationNotPending => "The invitation was already accepted or revoked.".into(),
            Self::InvitationEmailMismatch => {
                "The invitation was sent to another email address.".into()
            }
            Self::LastOwner => "An organization must keep at least one owner.".into(),
            Self::OwnerRequired => {
                "Only an owner can change, grant or remove the owner role.".into()
            }
            Self::RoleInUse => "Members or invitations still use this role.".into(),
            Self::PlanLimitReached => {
                "The organization's plan allows no more members; upgrade the plan.".into()
            }
            Self::PlanSeatsExceeded {
                members,
                plan,
                limit,
            } => format!(
                "The organization has {members} members; the {plan} plan allows {limit}. Remove members first."
            ),
            Self::NotHeld { grant, permission } => match (grant, permission) {
                (Grant::KeyScope, Some(p)) => {
                    format!("A key cannot hold `{p}`, which you do not hold.")
                }
                (Grant::RolePermission, Some(p)) => {
                    format!("You cannot grant `{p}`, which you do not hold.")
                }
                (Grant::ManagedKey, Some(p)) => {
                    format!("This key holds `{p}`, which you do not hold.")
                }
                _ => "You cannot grant a role with permissions you do not hold.".into(),
            },
            Self::AlreadyVerified => "The address is already verified.".into(),
            Self::PlanChangeOperatorOnly => {
                "In production, plans change through billing or the operator API.".into()
            }
            Self::OrgSuspended => {
                "The organization is suspended. Contact the operator of this service.".into()
            }
            Self::DemoMode => {
                "This is a demo deployment: deleting organizations, removing or demoting owners, \
                 revoking the last API key and changing billing are turned off."
                    .into()
            }
            Self::JobState => "The job is not in a state that allows this.".into(),
            Self::ApiKeyInactive => "The API key is revoked or expired.".into(),
            Self::ApiKeyPrefixTaken => "The request conflicts with the current state.".into(),
            Self::BillingNotConfigured(what) => format!("Billing is not configured: {what}."),
            Self::PlanManagedByBilling => "The plan follows the organization's subscription: upgrade through checkout (`POST /v1/orgs/{org_id}/billing/checkout`) or change it in the customer portal.".into(),
            Self::SubscriptionExists => "The organization already has a subscription; change or cancel it in the customer portal (`POST /v1/orgs/{org_id}/billing/portal`).".into(),
            Self::NoBillingCustomer => "The organization has no billing account yet; start a checkout first.".into(),
            Self::BillingCustomerTaken => "The billing customer belongs to another organization.".into(),
            Self::VersionMismatch => "The resource changed since the version given in If-Match; read it again.".into(),
            Self::IdempotencyKeyInUse => "A request with this Idempotency-Key is being processed, or was processed and its response was not recorded; it will not run twice.".into(),
        }
    }

    /// The permission a refusal names, published as the problem's `permission` member.
    pub fn permission(&self) -> Option<Permission> {
        match self {
            Self::NotHeld {
                grant: Grant::KeyScope | Grant::ManagedKey,
                permission,
            } => *permission,
            _ => None,
        }
    }
}
