//! Authentication: who is calling, and the tenant context that only this module can
//! build. Tenant-scoped store methods require a [`TenantCtx`], so data of an organization
//! is reachable only after a credential was verified for it.

pub mod api_key;
pub mod credentials;
pub mod jwt;
pub mod member;
mod operator;
pub mod password;
pub mod scim;
pub mod sender;
mod tenant;
pub mod user;

pub(crate) use credentials::bearer_token;
pub use member::OrgMember;
pub(crate) use operator::{operator_session_value, OPERATOR_COOKIE, OPERATOR_SESSION};
pub use operator::{Operator, OperatorOrg, OperatorPlatform, OperatorSession};
pub use tenant::{Actor, ActorKind, RequestMeta, TenantCtx};
pub use user::{CurrentUser, Via};
