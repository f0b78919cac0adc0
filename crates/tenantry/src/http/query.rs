//! Unknown query parameters are refused, on every operation, against the OpenAPI
//! document: a misspelt filter must never silently return everything.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::{MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// Accepted in place of `cursor` (see `docs/api-conventions.md`).
const CURSOR_ALIASES: [&str; 2] = ["before", "after"];

/// Other parameters' spellings from the original products: (declared, also accepted).
const PARAM_ALIASES: [(&str, &str); 1] = [("actor_user_id", "actorUserId")];

/// The query parameters each operation declares: (method, path template) → names.
#[derive(Debug, Default)]
pub(crate) struct DeclaredQueries(HashMap<(String, String), HashSet<String>>);

impl DeclaredQueries {
    /// Reads the declared query parameters of every operation of `spec`.
    pub(crate) fn from_spec(spec: &utoipa::openapi::OpenApi) -> Arc<Self> {
        use utoipa::openapi::path::ParameterIn;
        let mut map = HashMap::new();
        for (path, item) in &spec.paths.paths {
            let operations = [
                ("GET", &item.get),
                ("PUT", &item.put),
                ("POST", &item.post),
                ("DELETE", &item.delete),
                ("PATCH", &item.patch),
            ];
            for (method, operation) in operations {
                let Some(operation) = operation else { continue };
                let mut names: HashSet<String> = operation
                    .parameters
                    .iter()
                    .flatten()
                    .filter(|p| p.parameter_in == ParameterIn::Query)
                    .map(|p| p.name.clone())
                    .collect();
                // The names the original products use for the cursor stay accepted.
                if names.contains("cursor") {
                    names.extend(CURSOR_ALIASES.map(str::to_owned));
                }
                for (declared, alias) in PARAM_ALIASES {
                    if names.contains(declared) {
                        names.insert(alias.to_owned());
                    }
                }
                map.insert((method.to_owned(), path.clone()), names);
            }
        }
        Arc::new(Self(map))
    }
}

/// Answers 400 `invalid_query` naming a query parameter the operation does not declare.
/// Routes outside the document (the Swagger UI) are left alone.
pub(crate) async fn refuse_unknown_query(
    declared: Arc<DeclaredQueries>,
    req: Request,
    next: Next,
) -> Response {
    let (Some(query), Some(route)) = (req.uri().query(), req.extensions().get::<MatchedPath>())
    else {
        return next.run(req).await;
    };
    let Some(allowed) = declared
        .0
        .get(&(req.method().as_str().to_owned(), route.as_str().to_owned()))
    else {
        return next.run(req).await;
    };
    let unknown = url::form_urlencoded::parse(query.as_bytes())
        .map(|(name, _)| name)
        .find(|name| !name.is_empty() && !allowed.contains(name.as_ref()));
    if let Some(name) = unknown {
        let mut known: Vec<&str> = allowed.iter().map(String::as_str).collect();
        known.sort_unstable();
        let takes = if known.is_empty() {
            "no query parameters".to_owned()
        } else {
            known.join(", ")
        };
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("Unknown query parameter `{name}`; this operation takes {takes}."),
        )
        .into_response();
    }
    next.run(req).await
}
