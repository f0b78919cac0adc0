//! Use cases: what an action means beyond one SQL transaction and apart from HTTP. The
//! API handlers, and later the console and SCIM, call these so they share one set of rules.
//! A new capability starts here: rules in [`domain`](crate::domain), storage in
//! [`store`](crate::store), and a thin handler in [`api`](crate::api).

pub(crate) mod access;
pub(crate) mod demo;
pub(crate) mod identity;
pub(crate) mod invitations;
pub(crate) mod plans;
