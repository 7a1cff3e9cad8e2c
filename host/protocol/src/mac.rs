//! HMAC-SHA256, the one primitive Zoom signs with.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// A MAC keyed by `key`.
pub(crate) fn keyed(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

/// Lowercase hex HMAC-SHA256 of `parts` (concatenated) under `key`.
pub(crate) fn hex_mac(key: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = keyed(key);
    for part in parts {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}
