//! Cross-cutting HTTP concerns: errors, extractors, middleware, OpenAPI.

pub(crate) mod error;
pub(crate) mod extract;
pub(crate) mod idempotency;
pub(crate) mod list;
pub(crate) mod meta;
pub(crate) mod middleware;
pub(crate) mod openapi;
pub(crate) mod query;
pub(crate) mod ratelimit;
