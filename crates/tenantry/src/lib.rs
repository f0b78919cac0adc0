//! Tenantry: a multi-tenant SaaS backend in one binary.
//!
//! See `docs/architecture.md` for the module map and the path of a request.

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod http;
pub mod ids;
pub mod jobs;
pub mod mail;
pub mod ratelimit;
pub mod rbac;
pub mod secrets;
pub mod seed;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod usage;
