//! The domain's own vocabulary and rules: validated values, the rules that decide what is
//! allowed, and the one error that says why something is not. Nothing here touches the
//! database or HTTP, so the API, the console and SCIM share it through
//! [`services`](crate::services) and [`store`](crate::store).

pub mod access;
pub mod error;
mod values;

pub use error::DomainError;
pub use values::{DisplayName, Email, Slug};
