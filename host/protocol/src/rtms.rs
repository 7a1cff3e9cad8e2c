//! The RTMS handshake signature.
//!
//! Every handshake (signaling and media) carries `signature`: lowercase hex HMAC-SHA256
//! keyed by the app's client secret over `{client_id},{meeting_uuid},{rtms_stream_id}`.
//! The client id itself is never sent. For webinars, Video SDK sessions and Contact
//! Center engagements the product's id goes in `meeting_uuid` all the same.

use crate::mac::hex_mac;

/// The handshake signature for one stream.
pub fn signature(
    client_id: &str,
    client_secret: &str,
    meeting_uuid: &str,
    rtms_stream_id: &str,
) -> String {
    hex_mac(
        client_secret.as_bytes(),
        &[format!("{client_id},{meeting_uuid},{rtms_stream_id}").as_bytes()],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hex_hmac_of_the_three_ids() {
        // printf 'cid,muuid,sid' | openssl dgst -sha256 -hmac secret
        let s = signature("cid", "secret", "muuid", "sid");
        assert_eq!(
            s,
            "8f2e6ec05c25e6d92bb7d9d2905ae8a6024c0614ce94dc7b8c6d314b4bbca09d"
        );
        assert!(s
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(s, signature("cid", "secret", "muuid", "sid2"));
    }
}
