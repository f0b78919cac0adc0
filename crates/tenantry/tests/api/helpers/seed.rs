//! Users, organizations and members set up without going through registration: the
//! same rows and audit records as `POST /v1/auth/register` and the invitation path, but
//! with one argon2id hash of [`PASSWORD`] per process instead of one per user.

use std::fmt;

use serde_json::{json, Value};
use tenantry::auth::RequestMeta;
use tenantry::domain::Email;
use tenantry::ids::UserId;
use tenantry::secrets::{random_token, token_hash};
use tenantry::state::AppState;
use tenantry::store::identity::{EmailPurpose, EmailToken, LoginAttempt};
use tenantry::store::now;
use tenantry::store::outbox::OutboundEmail;
use tokio::sync::OnceCell;

use super::{TestApp, PASSWORD};

/// A user set up for a test, signed in with a token pair. Derefs to its access token,
/// so it goes wherever a bearer token does.
#[derive(Clone, Debug)]
pub struct User {
    /// Id.
    pub id: UserId,
    /// Email address (as stored: lowercased).
    pub email: String,
    /// Access token (`Authorization: Bearer`).
    pub token: String,
    /// Refresh token of the registration's family.
    pub refresh_token: String,
}

impl std::ops::Deref for User {
    type Target = str;

    fn deref(&self) -> &str {
        &self.token
    }
}

/// An organization set up for a test, with its owner's token. Derefs to (and displays as)
/// its id.
#[derive(Clone, Debug)]
pub struct Org {
    /// Id (`org_…`).
    pub id: String,
    owner: String,
}

impl Org {
    /// The id.
    pub fn as_str(&self) -> &str {
        &self.id
    }
}

impl std::ops::Deref for Org {
    type Target = str;

    fn deref(&self) -> &str {
        &self.id
    }
}

impl fmt::Display for Org {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

/// The argon2id hash of [`PASSWORD`], computed once per test process (the PHC string
/// carries its parameters, so it verifies in every app).
async fn password_hash(state: &AppState) -> &'static str {
    static HASH: OnceCell<String> = OnceCell::const_new();
    HASH.get_or_init(|| async {
        state
            .hasher
            .hash(PASSWORD.to_owned())
            .await
            .expect("hash the test password")
    })
    .await
}

/// Request facts as the app records them for a local test client.
fn local_meta() -> RequestMeta {
    RequestMeta {
        ip: Some("127.0.0.1".to_owned()),
        user_agent: None,
        request_id: Some(uuid::Uuid::new_v4().to_string()),
    }
}

impl TestApp {
    /// Creates the account `email` (password [`PASSWORD`], name "Ann") and signs it in,
    /// as `POST /v1/auth/register` does: the user row, its verification token and email
    /// (with a delivery job), the `user.registered` and `login.succeeded` audit records
    /// and a refresh family; the access token comes from the app's own key ring.
    pub async fn user(&self, email: &str) -> User {
        let state = &self.state;
        let email = Email::parse(email).expect("valid test email");
        let meta = local_meta();
        let verify = random_token(32);
        let stored = EmailToken {
            purpose: EmailPurpose::VerifyEmail,
            hash: token_hash(&verify),
            expires_at: now() + chrono::Duration::hours(24),
        };
        let base = &state.config.auth.public_base_url;
        let mail = OutboundEmail {
            to: email.as_str().to_owned(),
            subject: "Verify your email address".to_owned(),
            body: format!(
                "Confirm this address by opening:\n\n{base}/verify-email?token={verify}\n\nThe link works once, for 24 hours.\n"
            ),
        };
        let hash = password_hash(state).await;
        let (user, _) = state
            .store
            .register_user(email.as_str(), "Ann", hash, (stored, mail), None, &meta)
            .await
            .expect("seed user");
        state.request_mail_delivery().await;
        let refresh_token = format!("rt_{}", random_token(32));
        let ttl = chrono::Duration::from_std(state.config.auth.refresh_token_ttl)
            .expect("refresh token lifetime");
        let refresh_hash = token_hash(&refresh_token);
        let attempt = LoginAttempt {
            email: email.as_str(),
            user: Some(user.id),
            method: "register",
            refresh: Some((&refresh_hash, now() + ttl)),
            session: None,
        };
        let grant = state
            .store
            .record_login(attempt, &meta)
            .await
            .expect("seed sign-in");
        let family = grant.family.expect("a refresh family");
        let (token, _) = state
            .keys
            .issue(&state.store, user.id, &family.simple().to_string())
            .await
            .expect("issue an access token");
        User {
            id: user.id,
            email: user.email,
            token,
            refresh_token,
        }
    }

    /// Creates organization `slug` (named `slug`) owned by the user of access token `owner`
    /// (a [`User`] derefs to it), over HTTP (`POST /v1/orgs`).
    pub async fn org_of(&self, owner: &str, slug: &str) -> Org {
        let res = self
            .as_(owner)
            .post("/v1/orgs", json!({"name": slug, "slug": slug}))
            .await;
        assert_eq!(res.status(), 201, "create org {slug}");
        let body: Value = res.json().await;
        Org {
            id: body["id"].as_str().expect("org id").to_owned(),
            owner: owner.to_owned(),
        }
    }

    /// Makes `email` a member of `org` with `role` (built-in name or custom role id): the
    /// owner invites them over HTTP, the account is set up as by [`TestApp::user`], and
    /// they accept the invitation over HTTP.
    pub async fn member(&self, org: &Org, email: &str, role: &str) -> User {
        let res = self
            .as_(&org.owner)
            .post(
                format!("/v1/orgs/{org}/invitations"),
                json!({"email": email, "role": role}),
            )
            .await;
        assert_eq!(res.status(), 201, "invite {email}");
        let invite: Value = res.json().await;
        let user = self.user(email).await;
        assert_eq!(
            invite["email"], user.email,
            "invited as the account's address"
        );
        let res = self
            .as_(&user)
            .post("/v1/invitations/accept", json!({"token": invite["token"]}))
            .await;
        assert_eq!(res.status(), 200, "accept {email}");
        user
    }
}
