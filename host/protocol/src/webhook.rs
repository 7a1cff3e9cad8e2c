//! Zoom's webhook signatures.
//!
//! Each delivery carries `x-zm-request-timestamp` (epoch seconds) and
//! `x-zm-signature: v0={hex}`, where `{hex}` is HMAC-SHA256 keyed by the app's webhook
//! secret token over `v0:{timestamp}:{raw body}`. The same keyed hash of a
//! `plainToken` is the `encryptedToken` answering `endpoint.url_validation`.

use hmac::Mac;

use crate::mac::{hex_mac, keyed};
use crate::Secret;

/// Lowercase hex HMAC-SHA256 of `message` under `secret` (the webhook signature's hash,
/// and the `encryptedToken` of a url_validation answer).
pub fn sign_hex(secret: &Secret, message: &[u8]) -> String {
    hex_mac(secret.expose().as_bytes(), &[message])
}

/// The `x-zm-signature` header value for `body` sent at `timestamp` (epoch seconds).
pub fn signature_header(secret: &Secret, timestamp: &str, body: &[u8]) -> String {
    let hex = hex_mac(
        secret.expose().as_bytes(),
        &[b"v0:", timestamp.as_bytes(), b":", body],
    );
    format!("v0={hex}")
}

/// Why a signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// Not of the form `v0=HEX`.
    Malformed,
    /// Well-formed, but not this body's signature under this secret.
    Mismatch,
}

/// Checks an `x-zm-signature` value over the raw `body`, in constant time.
pub fn verify(
    secret: &Secret,
    timestamp: &str,
    body: &[u8],
    header: &str,
) -> Result<(), SignatureError> {
    let sig = header
        .trim()
        .strip_prefix("v0=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or(SignatureError::Malformed)?;
    let mut mac = keyed(secret.expose().as_bytes());
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac.verify_slice(&sig).map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_body_verifies_and_a_changed_one_does_not() {
        let secret = Secret::new("whsec");
        let header = signature_header(&secret, "1700000000", b"{\"event\":\"x\"}");
        // printf 'v0:1700000000:{"event":"x"}' | openssl dgst -sha256 -hmac whsec
        assert_eq!(
            header,
            "v0=2aa98426aaaa0e7d656176ba66fd791493a89e594d61ccb124d2cd33a15020fc"
        );
        assert_eq!(
            verify(&secret, "1700000000", b"{\"event\":\"x\"}", &header),
            Ok(())
        );
        assert_eq!(
            verify(&secret, "1700000000", b"{\"event\":\"y\"}", &header),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&secret, "1700000001", b"{\"event\":\"x\"}", &header),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&secret, "1", b"", "sha256=abc"),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn sign_hex_matches_the_reference_value() {
        // HMAC-SHA256("secret", "abc") as computed by any HMAC implementation.
        assert_eq!(
            sign_hex(&Secret::new("secret"), b"abc"),
            "9946dad4e00e913fc8be8e5d3f7e110a4a9e832f83fb09c345285d78638d8a0e"
        );
    }

    #[test]
    fn the_url_validation_token_is_the_keyed_hash_of_the_plain_token() {
        // printf 'qgg8vlvZRS6UYooatFL8Aw' | openssl dgst -sha256 -hmac 'secret'
        let secret = Secret::new("secret");
        assert_eq!(
            sign_hex(&secret, b"qgg8vlvZRS6UYooatFL8Aw"),
            "72cef096bfd47c0b8664df30d07721641e4abd7e885ba432204260db477a9a3e"
        );
        assert_ne!(
            sign_hex(&secret, b"abc"),
            sign_hex(&Secret::new("other"), b"abc")
        );
    }
}
