//! The tenant context value.

use serde::Serialize;

use crate::ids::OrgId;

/// Kind of principal behind an action, as recorded in the audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// A signed-in person.
    User,
    /// An API key.
    ApiKey,
    /// A SCIM provisioning client.
    Scim,
    /// The operator API (`INTERNAL_ADMIN_TOKEN`).
    Operator,
    /// Tenantry itself (jobs, maintenance).
    System,
}

impl ActorKind {
    /// Stable name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::ApiKey => "api_key",
            Self::Scim => "scim",
            Self::Operator => "operator",
            Self::System => "system",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "user" => Self::User,
            "api_key" => Self::ApiKey,
            "scim" => Self::Scim,
            "operator" => Self::Operator,
            "system" => Self::System,
            _ => return None,
        })
    }
}

/// Who acts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// Kind of principal.
    pub kind: ActorKind,
    /// Its id, when it has one.
    pub id: Option<String>,
}

/// Facts about the request an action came from, kept with audit records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestMeta {
    /// Client address.
    pub ip: Option<String>,
    /// `User-Agent` header, truncated.
    pub user_agent: Option<String>,
    /// The request id also returned in `x-request-id`.
    pub request_id: Option<String>,
}

/// Proof that a verified principal may act in one organization. Only the authentication
/// layer constructs it; every tenant-scoped store method takes it first.
#[derive(Clone, Debug)]
pub struct TenantCtx {
    org_id: OrgId,
    actor: Actor,
    meta: RequestMeta,
}

impl TenantCtx {
    /// Built by the extractors of this module after the credential was checked.
    pub(in crate::auth) fn new(org_id: OrgId, actor: Actor, meta: RequestMeta) -> Self {
        Self {
            org_id,
            actor,
            meta,
        }
    }

    /// For tenant work Tenantry does on its own behalf (jobs acting for an organization
    /// the job row names).
    pub(crate) fn system(org_id: OrgId) -> Self {
        Self::new(
            org_id,
            Actor {
                kind: ActorKind::System,
                id: None,
            },
            RequestMeta::default(),
        )
    }

    /// For changes the billing provider reports (webhook events applied by a job): audited
    /// as the system actor `billing`.
    pub(crate) fn billing(org_id: OrgId) -> Self {
        Self::new(
            org_id,
            Actor {
                kind: ActorKind::System,
                id: Some("billing".to_owned()),
            },
            RequestMeta::default(),
        )
    }

    /// For tests of the storage layer, and benchmarks that call the store directly.
    #[cfg(feature = "test-support")]
    pub fn for_tests(org_id: OrgId) -> Self {
        Self::new(
            org_id,
            Actor {
                kind: ActorKind::System,
                id: Some("test".to_owned()),
            },
            RequestMeta::default(),
        )
    }

    /// The organization.
    pub fn org_id(&self) -> OrgId {
        self.org_id
    }

    /// Who acts.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// Where the request came from.
    pub fn meta(&self) -> &RequestMeta {
        &self.meta
    }
}
