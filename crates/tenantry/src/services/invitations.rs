//! Invitations: the single-use token (only its hash is stored) and the email that
//! carries it.

use crate::auth::TenantCtx;
use crate::mail::templates;
use crate::secrets::{random_token, token_hash};
use crate::store::invitations::InvitationToken;
use crate::store::{Store, StoreError};

/// Invitations are valid for a week.
const INVITATION_TTL_DAYS: i64 = 7;

/// A new invitation token for `to` into `ctx`'s organization and its email, linking under
/// `base`. (A resend passes an empty `to`: the store keeps the invitation's address.)
pub(crate) async fn new_token(
    store: &Store,
    base: &str,
    ctx: &TenantCtx,
    to: &str,
) -> Result<(String, InvitationToken), StoreError> {
    let org = store.get_org(ctx).await?;
    let token = random_token(32);
    let email = templates::invitation(
        to,
        &org.name,
        &format!("{base}/accept-invitation?token={token}"),
        INVITATION_TTL_DAYS,
    );
    let stored = InvitationToken {
        hash: token_hash(&token),
        expires_at: crate::store::now() + chrono::Duration::days(INVITATION_TTL_DAYS),
        email,
    };
    Ok((token, stored))
}
