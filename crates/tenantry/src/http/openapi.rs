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
        (name = "operator", description = "Operator API, authenticated with INTERNAL_ADMIN_TOKEN")
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "operator_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The INTERNAL_ADMIN_TOKEN of the deployment."))
                    .build(),
            ),
        );
    }
}
