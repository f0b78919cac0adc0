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
        (name = "data", description = "The example tenant resource, metered per request"),
        (name = "scim", description = "SCIM provisioning: tokens and group-to-role mappings (the SCIM 2.0 endpoints themselves are under /scim/v2, see docs/scim.md)")
    )
)]
pub(crate) struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        // The permission catalog, so clients can validate role definitions offline.
        let names: Vec<&str> = crate::rbac::Permission::ALL
            .iter()
            .map(|p| p.as_str())
            .collect();
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

/// Declares on every operation the errors the shared layers can answer, where the
/// operation does not declare them itself: 503 (a dependency is down) and 429 (rate
/// limits) everywhere but the probes; 401 where credentials are required; 403 and 404
/// under an organization or an id in the path; 400 everywhere (unknown query parameters);
/// 413 and 415 where there is a body, 422 where there is a body or a query. Each with the problem details body.
pub(crate) fn declare_common_responses(spec: &mut utoipa::openapi::OpenApi) {
    for (path, item) in spec.paths.paths.iter_mut() {
        let probe = matches!(path.as_str(), "/health" | "/ready" | "/metrics");
        let has_id = path.contains('{');
        let in_org = path.starts_with("/v1/orgs/{org_id}");
        if let Some(post) = item.post.as_mut().filter(|_| path.starts_with("/v1/")) {
            declare_idempotency_key(post);
        }
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
            let has_body = operation.request_body.is_some();
            let has_query = operation.parameters.as_ref().is_some_and(|params| {
                params
                    .iter()
                    .any(|p| p.parameter_in == utoipa::openapi::path::ParameterIn::Query)
            });
            let mut declare = |status: &str, why: &str, when: bool| {
                if when {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| problem_response(why));
                }
            };
            declare(
                "503",
                "`service_unavailable`: a dependency (database, Redis) cannot answer; retry",
                !probe,
            );
            declare(
                "429",
                "`rate_limited` (with `Retry-After`) or `quota_exceeded`",
                !probe,
            );
            declare("401", "`missing_credentials`, `invalid_token`, `token_expired` or `invalid_api_key` (with `WWW-Authenticate`)", secured);
            declare(
                "403",
                "`forbidden`: the caller lacks the permission named in the problem",
                in_org,
            );
            declare(
                "404",
                "`not_found`: no such resource, or one of another organization",
                has_id,
            );
            declare(
                "400",
                "`invalid_query` (a query parameter the operation does not declare), `malformed_json`, \
                 `invalid_characters` (NUL) or `invalid_idempotency_key`",
                !probe,
            );
            declare("413", "`payload_too_large`", has_body);
            declare(
                "415",
                "`unsupported_media_type`: the body must be `application/json`",
                has_body,
            );
            declare(
                "422",
                "`invalid_body` or `validation_failed` (with `errors`): a body or query value \
                 breaks a rule",
                has_body || has_query,
            );
            problems_as_problem_json(&mut operation.responses);
        }
    }
}

/// The optional `Idempotency-Key` header of a creating request, and its outcomes.
fn declare_idempotency_key(operation: &mut utoipa::openapi::path::Operation) {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    let params = operation.parameters.get_or_insert_with(Vec::new);
    if !params
        .iter()
        .any(|p| p.name.eq_ignore_ascii_case("idempotency-key"))
    {
        params.push(
            ParameterBuilder::new()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(utoipa::openapi::Required::False)
                .description(Some(
                    "Makes the request safe to retry for 24 hours: the same key and request replay \
                     the first response (`Idempotent-Replayed: true`); a change that committed never runs twice.",
                ))
                .schema(Some(
                    utoipa::openapi::ObjectBuilder::new()
                        .schema_type(utoipa::openapi::schema::Type::String)
                        .min_length(Some(1))
                        .max_length(Some(255))
                        .pattern(Some("^[\\x20-\\x7E]+$")),
                ))
                .build(),
        );
    }
    let responses = &mut operation.responses.responses;
    responses.entry("409".to_owned()).or_insert_with(|| {
        problem_response("`idempotency_key_in_use` (the request with this key runs, or ran without a recorded response) or `idempotent_response_withheld` (its response carried a secret)")
    });
    responses.entry("422".to_owned()).or_insert_with(|| {
        problem_response("`idempotency_key_reused`: the key was used with another request")
    });
}

/// Error responses declared by handlers (`body = Problem`) are served as
/// `application/problem+json`, and declared so.
fn problems_as_problem_json(responses: &mut utoipa::openapi::Responses) {
    for (status, response) in responses.responses.iter_mut() {
        let utoipa::openapi::RefOr::T(response) = response else {
            continue;
        };
        if !(status.starts_with('4') || status.starts_with('5')) {
            continue;
        }
        if let Some(content) = response.content.shift_remove("application/json") {
            response
                .content
                .insert(super::error::PROBLEM_JSON.to_owned(), content);
        }
    }
}

fn problem_response(
    description: &str,
) -> utoipa::openapi::RefOr<utoipa::openapi::response::Response> {
    utoipa::openapi::ResponseBuilder::new()
        .description(description)
        .content(
            super::error::PROBLEM_JSON,
            utoipa::openapi::ContentBuilder::new()
                .schema(Some(utoipa::openapi::Ref::from_schema_name("Problem")))
                .build(),
        )
        .into()
}
