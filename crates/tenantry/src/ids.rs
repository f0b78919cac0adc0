//! Prefixed, type-safe identifiers (`org_…`, `ws_…`, `aud_…`).
//!
//! Each id wraps a UUIDv7 (time-ordered, so indexes stay append-friendly) and is shown to
//! API users as `<prefix>_<32 hex digits>`. Parsing accepts only the id's own prefix, so an
//! organization id can never be passed where a workspace id is expected.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// The error returned when a string is not a valid id of the expected kind.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("not a valid {kind} id (expected `{prefix}_` followed by 32 hex digits)")]
pub struct InvalidId {
    /// Human name of the id kind, e.g. `organization`.
    pub kind: &'static str,
    /// The expected prefix.
    pub prefix: &'static str,
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, sqlx::Type)]
        #[sqlx(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// The prefix shown before the hex digits.
            pub const PREFIX: &'static str = $prefix;

            /// A new, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// The id of a UUID read from a trusted source (a notification payload).
            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}_{}", $prefix, self.0.simple())
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let invalid = InvalidId { kind: $kind, prefix: $prefix };
                let hex = s
                    .strip_prefix($prefix)
                    .and_then(|rest| rest.strip_prefix('_'))
                    .ok_or(invalid.clone())?;
                if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(invalid);
                }
                Uuid::try_parse(hex).map(Self).map_err(|_| invalid)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .pattern(Some(concat!("^", $prefix, "_[0-9a-f]{32}$")))
                    .description(Some(concat!("Identifier of a ", $kind, ".")))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

id_type!(
    /// Identifier of an organization (a tenant).
    OrgId, "org", "organization"
);
id_type!(
    /// Identifier of a workspace inside an organization.
    WorkspaceId, "ws", "workspace"
);
id_type!(
    /// Identifier of a user (global: one person, many organizations).
    UserId, "usr", "user"
);
id_type!(
    /// Identifier of a browser session.
    SessionId, "ses", "session"
);
id_type!(
    /// Identifier of a custom role.
    RoleId, "rol", "role"
);
id_type!(
    /// Identifier of an invitation.
    InvitationId, "inv", "invitation"
);
id_type!(
    /// Identifier of a background job.
    JobId, "job", "job"
);
id_type!(
    /// Identifier of an API key (not its secret).
    ApiKeyId, "key", "API key"
);
id_type!(
    /// Identifier of an item of the example data resource.
    DataItemId, "item", "data item"
);
id_type!(
    /// Identifier of an audit event.
    AuditEventId, "aud", "audit event"
);
id_type!(
    /// Identifier of a SCIM token (not its secret).
    ScimTokenId, "scimtok", "SCIM token"
);
id_type!(
    /// Identifier of a user provisioned through SCIM in one organization (not the user id).
    ScimUserId, "scimusr", "SCIM user"
);
id_type!(
    /// Identifier of a SCIM group of one organization.
    ScimGroupId, "scimgrp", "SCIM group"
);

impl OrgId {
    /// The platform's own audit chain (sign-ins, password resets): not a tenant, and no
    /// tenant scope can see it.
    pub const PLATFORM: OrgId = OrgId(Uuid::nil());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_display_and_parse() {
        let id = OrgId::new();
        let shown = id.to_string();
        assert!(shown.starts_with("org_"));
        assert_eq!(shown.len(), 4 + 32);
        assert_eq!(shown.parse::<OrgId>(), Ok(id));
    }

    #[test]
    fn rejects_foreign_prefix_and_bad_hex() {
        let ws = WorkspaceId::new().to_string();
        assert!(ws.parse::<OrgId>().is_err());
        assert!("org_zz".parse::<OrgId>().is_err());
        assert!("org_".parse::<OrgId>().is_err());
        assert!(format!("org_{}", "g".repeat(32)).parse::<OrgId>().is_err());
        assert!(format!("org-{}", "a".repeat(32)).parse::<OrgId>().is_err());
    }
}
