//! Account emails: single-use, expiring tokens (only their hashes are stored) and the
//! message that carries each.

use crate::mail::templates;
use crate::secrets::{random_token, token_hash};
use crate::store::identity::{EmailPurpose, EmailToken};
use crate::store::outbox::OutboundEmail;

/// Verification links live a day.
const VERIFY_TTL_HOURS: i64 = 24;
/// Reset links live an hour.
const RESET_TTL_HOURS: i64 = 1;

/// A token for `purpose` valid for `hours`: the secret and what is stored of it.
fn token_for(purpose: EmailPurpose, hours: i64) -> (String, EmailToken) {
    let token = random_token(32);
    let stored = EmailToken {
        purpose,
        hash: token_hash(&token),
        expires_at: crate::store::now() + chrono::Duration::hours(hours),
    };
    (token, stored)
}

/// A verification token for `address` and its email, linking under `base`.
pub(crate) fn verification_for(base: &str, address: &str) -> (String, (EmailToken, OutboundEmail)) {
    let (token, stored) = token_for(EmailPurpose::VerifyEmail, VERIFY_TTL_HOURS);
    let email = templates::verify_email(
        address,
        &format!("{base}/verify-email?token={token}"),
        VERIFY_TTL_HOURS,
    );
    (token, (stored, email))
}

/// A password-reset token for `address` and its email, linking under `base`.
pub(crate) fn reset_for(base: &str, address: &str) -> (String, (EmailToken, OutboundEmail)) {
    let (token, stored) = token_for(EmailPurpose::ResetPassword, RESET_TTL_HOURS);
    let email = templates::reset_password(
        address,
        &format!("{base}/reset-password?token={token}"),
        RESET_TTL_HOURS,
    );
    (token, (stored, email))
}
