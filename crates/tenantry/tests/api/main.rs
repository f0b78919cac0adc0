//! Black-box tests through the public HTTP interface and the binary, each on a fresh
//! database, on SQLite and on PostgreSQL.

#![expect(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
#![expect(
    unreachable_pub,
    reason = "test modules share their helpers as plain `pub`"
)]

mod helpers;

mod admin;
mod audit;
mod audit_export;
mod backup;
mod billing;
mod browser;
mod console;
mod corrupt;
mod failover;
mod features;
mod hardening;
mod http;
mod identity;
mod isolation;
mod jobs;
mod jwt;
mod keys;
mod limits;
mod openapi;
mod outage;
mod pgbouncer;
mod process;
mod realtime;
mod rls;
mod scim;
mod store;
mod support;
mod tenancy;
mod usage;
