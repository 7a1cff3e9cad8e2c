//! The handshakes that open every socket, and their signature.
//!
//! The client opens signaling with `SIGNALING_HAND_SHAKE_REQ` (1) and each media socket
//! with `DATA_HAND_SHAKE_REQ` (3). Both carry `protocol_version` 1, a `sequence` that is
//! new for every attempt, the `meeting_uuid` (for webinars, Video SDK sessions and
//! Contact Center engagements the product's id goes there all the same), the
//! `rtms_stream_id` and the [`signature`]; a media request adds `media_type` and
//! `media_params` (see [`crate::rtms::media`]). The server answers with the matching
//! response (2 or 4), echoing `sequence`, with a `status_code` (see
//! [`crate::rtms::status`]) and a `reason`; on success a signaling reply adds
//! `media_server.server_urls` and a media reply the effective `media_params`. A refused
//! handshake is followed by a close.
//!
//! The signature is lowercase hex HMAC-SHA256 keyed by the app's client secret over
//! `{client_id},{meeting_uuid},{rtms_stream_id}`. The client id itself is never sent.

use serde_json::{json, Value};

use super::msg;
use crate::mac::hex_mac;

/// The `protocol_version` of every handshake.
pub const PROTOCOL_VERSION: u32 = 1;

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

/// `SIGNALING_HAND_SHAKE_REQ`; `client_agent` names the client (`rtms_client_agent`).
pub fn signaling_request(
    sequence: u64,
    meeting_uuid: &str,
    stream_id: &str,
    signature: &str,
    client_agent: &str,
) -> Value {
    json!({
        "msg_type": msg::SIGNALING_HAND_SHAKE_REQ,
        "protocol_version": PROTOCOL_VERSION,
        "sequence": sequence,
        "meeting_uuid": meeting_uuid,
        "rtms_stream_id": stream_id,
        "signature": signature,
        "rtms_client_agent": client_agent,
    })
}

/// `DATA_HAND_SHAKE_REQ` for the media types in `media_type` (bits), asking for
/// `media_params`, unencrypted.
pub fn data_request(
    sequence: u64,
    meeting_uuid: &str,
    stream_id: &str,
    signature: &str,
    media_type: u32,
    media_params: Value,
) -> Value {
    json!({
        "msg_type": msg::DATA_HAND_SHAKE_REQ,
        "protocol_version": PROTOCOL_VERSION,
        "sequence": sequence,
        "meeting_uuid": meeting_uuid,
        "rtms_stream_id": stream_id,
        "signature": signature,
        "media_type": media_type,
        "payload_encryption": false,
        "media_params": media_params,
    })
}

/// A handshake response (`msg_type` 2 or 4) echoing the request's `sequence`, without
/// the fields of a success (`media_server`, `media_params`), which the server adds.
pub fn reply(msg_type: u32, sequence: &Value, status_code: u32, reason: &str) -> Value {
    json!({
        "msg_type": msg_type,
        "protocol_version": PROTOCOL_VERSION,
        "sequence": sequence,
        "status_code": status_code,
        "reason": reason,
    })
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

    #[test]
    fn requests_carry_the_ids_the_version_and_the_signature() {
        let s = signaling_request(7, "m==", "sid", "abc", "zoomhost/1");
        assert_eq!(
            s,
            json!({"msg_type": 1, "protocol_version": 1, "sequence": 7, "meeting_uuid": "m==",
                   "rtms_stream_id": "sid", "signature": "abc", "rtms_client_agent": "zoomhost/1"})
        );
        let d = data_request(8, "m==", "sid", "abc", 9, json!({"audio": {}}));
        assert_eq!(d["msg_type"], msg::DATA_HAND_SHAKE_REQ);
        assert_eq!(d["protocol_version"], 1);
        assert_eq!(d["media_type"], 9);
        assert_eq!(d["payload_encryption"], false);
        assert_eq!(d["media_params"], json!({"audio": {}}));
    }

    #[test]
    fn a_reply_echoes_the_sequence() {
        let r = reply(msg::DATA_HAND_SHAKE_RESP, &json!(42), 3, "bad");
        assert_eq!(
            r,
            json!({"msg_type": 4, "protocol_version": 1, "sequence": 42, "status_code": 3, "reason": "bad"})
        );
    }
}
