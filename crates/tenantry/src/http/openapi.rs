//! The OpenAPI 3.1 document, generated from handler annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::Problem;

/// Root of the OpenAPI document; paths are added by the routers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tenantry API",
        description = "Multi-tenant SaaS backend: organizations, workspaces, RBAC, API keys, \
                       usage, billing, audit, jobs, realtime. Every error is RFC 9457 \
                       problem+json with a stable `code`.",
        license(name = "MIT", identifier = "MIT")
    ),
    components(schemas(Problem)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "health", description = "Liveness, readiness and metrics"),
        (name = "operator", description = "Operator API, authenticated with INTERNAL_ADMIN_TOKEN"),
        (name = "auth", description = "Accounts, tokens, sessions, email verification, password reset"),
        (name = "organizations", description = "Organizations, plans, audit log and the permission catalog"),
        (name = "workspaces", description = "Workspaces and per-workspace roles"),
        (name = "members", description = "Members and invitations"),
        (name = "roles", description = "Custom roles"),
        (name = "jobs", description = "Background jobs: durable, idempotent, retried"),
        (name = "api-keys", description = "API keys: scoped, expiring, rotatable, rate limited"),
        (name = "usage", description = "Usage metering, daily totals and plan quotas"),
        (name = "data", description = "The example tenant resource, metered per request")
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        // The permission catalog, so clients can validate role definitions offline.
        let names: Vec<&str> = crate::rbac::CATALOG.iter().map(|(name, _)| *name).collect();
        components.schemas.insert(
            "Permission".to_owned(),
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::Type::String)
                .enum_values(Some(names))
                .description(Some(
                    "A permission of the catalog (see GET /v1/permissions).",
                ))
                .into(),
        );
        components.add_security_scheme(
            "operator_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The INTERNAL_ADMIN_TOKEN of the deployment."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "metrics_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "METRICS_TOKEN (or, in production without one, INTERNAL_ADMIN_TOKEN).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An access token from /v1/auth/login or /v1/auth/refresh.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("tk_…")
                    .description(Some(
                        "An API key of the organization in the path, limited to its scopes.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Cookie(
                utoipa::openapi::security::ApiKeyValue::with_description(
                    "tenantry_session",
                    "Browser session from /v1/auth/sessions; changes also need X-CSRF-Token.",
                ),
            )),
        );
    }
}
