//! Tenantry: a multi-tenant SaaS backend in one binary.
//!
//! See `docs/architecture.md` for the module map and the path of a request.

pub(crate) mod api;
pub mod auth;
pub mod billing;
pub mod cli;
pub mod config;
pub(crate) mod console;
pub mod db;
pub mod domain;
pub mod features;
pub mod healthcheck;
pub(crate) mod http;
pub mod ids;
pub mod jobs;
pub(crate) mod mail;
pub(crate) mod ratelimit;
pub mod rbac;
pub mod realtime;
pub mod scim;
pub mod secrets;
pub(crate) mod seed;
pub(crate) mod services;
pub mod startup;
pub mod state;
pub mod store;
pub(crate) mod telemetry;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod usage;
pub(crate) mod vocab;
