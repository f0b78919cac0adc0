//! Access tokens: EdDSA-signed JWTs (RFC 8725 practice) and the published JWKS.
//!
//! Signing keys are Ed25519 keys derived from `JWT_SIGNING_SECRET` and the key id with
//! HMAC-SHA256, so every instance signs with the same keys and no private key is stored;
//! the database keeps only key ids and public halves. Rotation adds a key and retires the
//! old one, which keeps verifying until tokens it signed have expired.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::Utc;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::RwLock;

use crate::config::AuthConfig;
use crate::ids::UserId;
use crate::store::keys::SigningKeyRow;
use crate::store::{Store, StoreError};

/// Allowed clock skew when checking `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 5;
/// How long a loaded key set is trusted before it is re-read.
const RELOAD_AFTER: Duration = Duration::from_secs(60);
/// Least time between re-reads triggered by an unknown `kid`.
const UNKNOWN_KID_RELOAD: Duration = Duration::from_secs(5);
/// PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410), followed by the 32-byte seed.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Claims of an access token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// The user.
    pub sub: String,
    /// Expiry (seconds since the epoch).
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Token id.
    pub jti: String,
    /// Refresh-token family the token was issued from.
    pub sid: String,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Malformed, wrong type or algorithm, bad signature, wrong audience… (401).
    #[error("invalid token: {0}")]
    Invalid(String),
    /// Well-formed and signed, but past its `exp` (401 `token_expired`).
    #[error("token expired")]
    Expired,
    /// The key store could not be read, so the token could not be checked (503, never 401).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The `typ` header of access tokens (RFC 9068); `application/at+jwt` is accepted too.
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

struct Verifier {
    key: DecodingKey,
}

struct KeySet {
    signing: Option<(String, EncodingKey)>,
    verifying: HashMap<String, Verifier>,
    public: Vec<SigningKeyRow>,
    loaded_at: Instant,
}

/// The signing and verifying keys of this deployment.
pub struct KeyRing {
    secret: String,
    issuer: String,
    audience: String,
    ttl: Duration,
    validation: Validation,
    keys: RwLock<KeySet>,
}

/// The Ed25519 seed of key `kid`.
fn derive_seed(secret: &str, kid: &str) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(b"tenantry/jwt/ed25519/");
    mac.update(kid.as_bytes());
    mac.finalize().into_bytes().into()
}

/// The public key (base64url `x`) of key `kid`.
pub fn public_key(secret: &str, kid: &str) -> String {
    let signing = ed25519_dalek::SigningKey::from_bytes(&derive_seed(secret, kid));
    URL_SAFE_NO_PAD.encode(signing.verifying_key().to_bytes())
}

/// The signing key `kid` (derived; never stored).
pub fn encoding_key(secret: &str, kid: &str) -> EncodingKey {
    let mut der = ED25519_PKCS8_PREFIX.to_vec();
    der.extend_from_slice(&derive_seed(secret, kid));
    EncodingKey::from_ed_der(&der)
}

impl KeyRing {
    /// Loads the key set, creating the first key if there is none.
    pub async fn load(store: &Store, config: &AuthConfig) -> Result<Self, StoreError> {
        let secret = config.jwt_signing_secret.expose().to_owned();
        store
            .ensure_signing_key(&|kid| public_key(&secret, kid))
            .await?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&config.jwt_issuer]);
        validation.set_audience(&[&config.jwt_audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        let ring = Self {
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
            ttl: config.access_token_ttl,
            validation,
            keys: RwLock::new(KeySet {
                signing: None,
                verifying: HashMap::new(),
                public: Vec::new(),
                loaded_at: Instant::now(),
            }),
            secret,
        };
        ring.reload(store).await?;
        Ok(ring)
    }

    /// Re-reads the keys: the newest unretired one signs; retired ones verify until the
    /// tokens they signed have expired.
    pub async fn reload(&self, store: &Store) -> Result<(), StoreError> {
        let grace = self.ttl + Duration::from_secs(LEEWAY_SECS);
        let rows = store.usable_signing_keys(grace).await?;
        let mut verifying = HashMap::new();
        for row in &rows {
            // A row whose public key does not match the configured secret was made with
            // another secret: it can neither sign nor verify here.
            if public_key(&self.secret, &row.kid) != row.public_key {
                tracing::warn!(kid = %row.kid, "signing key does not match JWT_SIGNING_SECRET; ignored");
                continue;
            }
            match DecodingKey::from_ed_components(&row.public_key) {
                Ok(key) => {
                    verifying.insert(row.kid.clone(), Verifier { key });
                }
                Err(e) => {
                    tracing::warn!(kid = %row.kid, error = %e, "unreadable public key; ignored")
                }
            }
        }
        let signing = rows
            .iter()
            .filter(|r| r.retired_at.is_none() && verifying.contains_key(&r.kid))
            .max_by_key(|r| r.created_at)
            .map(|r| (r.kid.clone(), encoding_key(&self.secret, &r.kid)));
        let public = rows
            .into_iter()
            .filter(|r| verifying.contains_key(&r.kid))
            .collect();
        *self.keys.write().await = KeySet {
            signing,
            verifying,
            public,
            loaded_at: Instant::now(),
        };
        Ok(())
    }

    /// Signs an access token for `user`, issued from refresh family `family`.
    pub async fn issue(
        &self,
        store: &Store,
        user: UserId,
        family: &str,
    ) -> Result<(String, u64), TokenError> {
        self.refresh_if_stale(store).await;
        let keys = self.keys.read().await;
        let (kid, key) = keys.signing.as_ref().ok_or_else(|| {
            TokenError::Invalid("no signing key matches JWT_SIGNING_SECRET".into())
        })?;
        let now = Utc::now().timestamp();
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(900);
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user.to_string(),
            exp: now + ttl,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            sid: family.to_owned(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.clone());
        header.typ = Some("at+jwt".to_owned());
        let token = jsonwebtoken::encode(&header, &claims, key)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        Ok((token, self.ttl.as_secs()))
    }

    /// Verifies a token: algorithm pinned to EdDSA, `typ` `at+jwt`, known `kid`, signature,
    /// `exp`, `nbf`, `iat` not in the future, `iss`, `aud`, with at most [`LEEWAY_SECS`] of
    /// skew. A `kid` that is not loaded is looked up in the database (at most every
    /// [`UNKNOWN_KID_RELOAD`]); if that lookup fails the token could not be checked.
    pub async fn verify(&self, store: &Store, token: &str) -> Result<Claims, TokenError> {
        self.refresh_if_stale(store).await;
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Invalid("algorithm not accepted".into()));
        }
        // Explicit typing (RFC 8725 §3.11): an ID token or any other JWT signed with these
        // keys is not an access token.
        let typed = header.typ.as_deref().is_some_and(|typ| {
            let typ = typ.to_ascii_lowercase();
            typ == ACCESS_TOKEN_TYPE || typ == "application/at+jwt"
        });
        if !typed {
            return Err(TokenError::Invalid("not an access token (typ)".into()));
        }
        let kid = header
            .kid
            .ok_or_else(|| TokenError::Invalid("no kid".into()))?;
        if !self.keys.read().await.verifying.contains_key(&kid) {
            let stale = self.keys.read().await.loaded_at.elapsed() > UNKNOWN_KID_RELOAD;
            if stale {
                self.reload(store).await?;
            }
        }
        let keys = self.keys.read().await;
        let verifier = keys
            .verifying
            .get(&kid)
            .ok_or_else(|| TokenError::Invalid("unknown kid".into()))?;
        let data = jsonwebtoken::decode::<Claims>(token, &verifier.key, &self.validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid(e.to_string()),
            },
        )?;
        let leeway = i64::try_from(LEEWAY_SECS).unwrap_or(0);
        if data.claims.iat > Utc::now().timestamp() + leeway {
            return Err(TokenError::Invalid("issued in the future".into()));
        }
        Ok(data.claims)
    }

    /// Makes the next use re-read the key set (after keys were rotated from outside this
    /// process).
    pub async fn mark_stale(&self) {
        let mut keys = self.keys.write().await;
        if let Some(old) = Instant::now().checked_sub(RELOAD_AFTER + Duration::from_secs(1)) {
            keys.loaded_at = old;
        }
    }

    /// The public keys as a JWK Set.
    pub async fn jwks(&self) -> serde_json::Value {
        let keys = self.keys.read().await;
        let list: Vec<serde_json::Value> = keys
            .public
            .iter()
            .map(|k| {
                serde_json::json!({
                    "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
                    "kid": k.kid, "x": k.public_key,
                })
            })
            .collect();
        serde_json::json!({ "keys": list })
    }

    /// Re-reads a key set older than [`RELOAD_AFTER`]. When the database cannot answer,
    /// the keys already loaded keep serving (a valid token stays valid through an outage)
    /// and the next attempt waits [`UNKNOWN_KID_RELOAD`].
    async fn refresh_if_stale(&self, store: &Store) {
        if self.keys.read().await.loaded_at.elapsed() <= RELOAD_AFTER {
            return;
        }
        if let Err(err) = self.reload(store).await {
            tracing::warn!(error = %crate::telemetry::error_chain(&err), "cannot re-read signing keys; keeping the loaded ones");
            let mut keys = self.keys.write().await;
            let retry_at = Instant::now()
                .checked_sub(RELOAD_AFTER.saturating_sub(UNKNOWN_KID_RELOAD))
                .unwrap_or_else(Instant::now);
            keys.loaded_at = keys.loaded_at.max(retry_at);
        }
    }
}
