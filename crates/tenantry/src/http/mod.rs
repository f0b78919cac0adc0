//! Cross-cutting HTTP concerns: errors, extractors, middleware, OpenAPI.

pub mod error;
pub mod extract;
pub mod idempotency;
pub mod list;
pub mod meta;
pub mod middleware;
pub mod openapi;
pub mod query;
