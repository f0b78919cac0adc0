//! Stripe's webhook signature scheme: `Stripe-Signature: t=<unix time>,v1=<hex>[,v1=…]`,
//! where each `v1` is HMAC-SHA256 over `"<t>.<raw body>"` keyed with an endpoint secret.
//! Any `v1` matching any configured secret (several during rotation) is accepted, compared
//! in constant time, and only while `t` is within the tolerance of now (either way).

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secrets::Secret;

/// Why a webhook's signature was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `Stripe-Signature` header.
    #[error("the Stripe-Signature header is missing")]
    Missing,
    /// The header is not `t=…,v1=…`.
    #[error("the Stripe-Signature header is malformed: it needs one `t=<unix time>` and at least one `v1=<hex>`")]
    Malformed,
    /// The timestamp is older (or further ahead) than the tolerance.
    #[error("the signature's timestamp is outside the tolerance")]
    OutsideTolerance,
    /// No `v1` signature matches a configured secret.
    #[error("no signature matches the endpoint's secret")]
    NoMatch,
}

fn mac(secret: &Secret, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Checks `header` over the raw `body` at time `now` (unix seconds); returns the signed
/// timestamp.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &[Secret],
    tolerance: Duration,
    now: i64,
) -> Result<i64, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    // Stripe sends one `t` and a `v1` per active secret: a longer header is not Stripe's,
    // and bounding it bounds the work an unsigned request can cause.
    if header.len() > MAX_HEADER {
        return Err(SignatureError::Malformed);
    }
    let mut timestamp = None;
    let mut signatures: Vec<[u8; 32]> = Vec::new();
    for part in header.split(',') {
        let (key, value) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match key {
            "t" if timestamp.is_none() => {
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed)?,
                );
            }
            "t" => return Err(SignatureError::Malformed),
            // Only a SHA-256 sized hex value can match; other schemes (`v0`) are ignored.
            "v1" => {
                let mut sig = [0u8; 32];
                if hex::decode_to_slice(value, &mut sig).is_ok() {
                    signatures.push(sig);
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    if now.abs_diff(timestamp) > tolerance.unsigned_abs() {
        return Err(SignatureError::OutsideTolerance);
    }
    // One MAC per secret over the body, compared in constant time with every candidate.
    let matches = secrets.iter().any(|secret| {
        let expected = mac(secret, timestamp, body).finalize().into_bytes();
        signatures.iter().fold(false, |found, sig| {
            found | subtle_eq(expected.as_slice(), sig)
        })
    });
    if matches {
        Ok(timestamp)
    } else {
        Err(SignatureError::NoMatch)
    }
}

/// Longest `Stripe-Signature` header accepted.
const MAX_HEADER: usize = 2048;

/// Constant-time equality of two byte strings of the same length.
fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `Stripe-Signature` header Stripe would send for `body` at `timestamp` (for tests,
/// benchmarks and local tools).
pub fn sign(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    let sig = hex::encode(mac(secret, timestamp, body).finalize().into_bytes());
    format!("t={timestamp},v1={sig}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret_for_the_fixed_vector";
    const BODY: &[u8] = br#"{"id":"evt_fixed","object":"event"}"#;
    /// Computed independently (Python's `hmac`) over `1700000000.` + BODY.
    const EXPECTED: &str = "ef04fe4787aec0083dedf7976d91633b7b54edda21d1da308a5c576bada9d180";
    const T: i64 = 1_700_000_000;
    const FIVE_MIN: Duration = Duration::from_secs(300);

    fn secrets(list: &[&str]) -> Vec<Secret> {
        list.iter().map(|s| Secret::new(*s)).collect()
    }

    #[test]
    fn matches_the_fixed_vector() {
        assert_eq!(
            sign(&Secret::new(SECRET), T, BODY),
            format!("t={T},v1={EXPECTED}")
        );
        let header = format!("t={T},v1={EXPECTED}");
        assert_eq!(
            verify(Some(&header), BODY, &secrets(&[SECRET]), FIVE_MIN, T + 10),
            Ok(T)
        );
    }

    #[test]
    fn refuses_tampering_wrong_secrets_and_bad_headers() {
        let header = format!("t={T},v1={EXPECTED}");
        let ok = secrets(&[SECRET]);
        let tampered = br#"{"id":"evt_fixed","object":"event "}"#;
        assert_eq!(
            verify(Some(&header), tampered, &ok, FIVE_MIN, T),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            verify(Some(&header), BODY, &secrets(&["whsec_other"]), FIVE_MIN, T),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            verify(None, BODY, &ok, FIVE_MIN, T),
            Err(SignatureError::Missing)
        );
        for bad in [
            "",
            "t=abc,v1=00",
            &format!("v1={EXPECTED}"),
            &format!("t={T}"),
            &format!("t={T},t={T},v1={EXPECTED}"),
        ] {
            assert_eq!(
                verify(Some(bad), BODY, &ok, FIVE_MIN, T),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn accepts_any_secret_and_any_signature_during_rotation() {
        let rotated = secrets(&["whsec_new", SECRET]);
        let header = format!("t={T},v1={},v1={EXPECTED},v0=ignored", "ab".repeat(32));
        assert_eq!(verify(Some(&header), BODY, &rotated, FIVE_MIN, T), Ok(T));
    }

    #[test]
    fn refuses_stale_and_future_timestamps() {
        let header = format!("t={T},v1={EXPECTED}");
        let ok = secrets(&[SECRET]);
        assert_eq!(verify(Some(&header), BODY, &ok, FIVE_MIN, T + 300), Ok(T));
        assert_eq!(
            verify(Some(&header), BODY, &ok, FIVE_MIN, T + 301),
            Err(SignatureError::OutsideTolerance)
        );
        assert_eq!(
            verify(Some(&header), BODY, &ok, FIVE_MIN, T - 301),
            Err(SignatureError::OutsideTolerance)
        );
    }
}
