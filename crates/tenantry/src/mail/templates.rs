//! The messages Tenantry sends, one function per message: subject and plain-text body,
//! filled from typed parameters. Handlers and services pick a template; none writes a body.

use crate::store::outbox::OutboundEmail;

/// Asks `to` to confirm their address through `link` (valid for `hours`).
pub(crate) fn verify_email(to: &str, link: &str, hours: i64) -> OutboundEmail {
    OutboundEmail {
        to: to.to_owned(),
        subject: "Verify your email address".to_owned(),
        body: format!(
            "Confirm this address by opening:\n\n{link}\n\nThe link works once, for {hours} hours.\n"
        ),
    }
}

/// Lets `to` choose a new password through `link` (valid for `hours`).
pub(crate) fn reset_password(to: &str, link: &str, hours: i64) -> OutboundEmail {
    OutboundEmail {
        to: to.to_owned(),
        subject: "Reset your password".to_owned(),
        body: format!(
            "Choose a new password by opening:\n\n{link}\n\nThe link works once, for {hours} hour. If you did not ask for it, ignore this message.\n"
        ),
    }
}

/// Invites `to` into organization `org_name` through `link` (valid for `days`).
pub(crate) fn invitation(to: &str, org_name: &str, link: &str, days: i64) -> OutboundEmail {
    OutboundEmail {
        to: to.to_owned(),
        subject: format!("You are invited to join {org_name}"),
        body: format!(
            "You have been invited to join {org_name} on Tenantry.\n\nAccept: {link}\n\nThe link works once, for {days} days.\n"
        ),
    }
}
