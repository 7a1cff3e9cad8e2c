//! The handshakes that open every socket, and their signature.
//!
//! The client opens signaling with `SIGNALING_HAND_SHAKE_REQ` (1) and each media socket
//! with `DATA_HAND_SHAKE_REQ` (3). Both carry `protocol_version` 1, a `sequence` that is
//! new for every attempt, the session's id, the `rtms_stream_id` and the [`signature`];
//! a media request adds `media_type` and `media_params` (see [`crate::rtms::media`]).
//! The id goes under the product's key (`meeting_uuid`, `webinar_uuid`, `session_id`,
//! `engagement_id`, `call_id`: [`crate::rtms::product`]), as Zoom's 2026 samples and its
//! Contact Center docs send it, or always under `meeting_uuid`, as Zoom's C SDK was seen
//! doing; servers accept either ([`request_id`]). The signature is computed over the same
//! id value. A signaling request may carry `buffer_data`: absent or true, the server
//! replays the audio it buffered before the client connected (up to 60 s); false drops
//! that first buffer (audio buffered during later interruptions is replayed either way). The server answers with the matching
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

/// Who a handshake is for: the id field and value, the stream and the signature.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    /// The id field (`meeting_uuid`, `webinar_uuid`, `session_id`, `engagement_id` or
    /// `call_id`).
    pub id_key: &'a str,
    /// The session's id under that field (the signature is over this value).
    pub id: &'a str,
    /// `rtms_stream_id`.
    pub stream_id: &'a str,
    /// The handshake [`signature`].
    pub signature: &'a str,
}

impl<'a> Credentials<'a> {
    /// The id under `meeting_uuid`, as Zoom's C SDK sends it for every product.
    pub fn meeting(meeting_uuid: &'a str, stream_id: &'a str, signature: &'a str) -> Self {
        Credentials {
            id_key: "meeting_uuid",
            id: meeting_uuid,
            stream_id,
            signature,
        }
    }
}

/// `SIGNALING_HAND_SHAKE_REQ`; `client_agent` names the client (`rtms_client_agent`).
pub fn signaling_request(
    sequence: u64,
    meeting_uuid: &str,
    stream_id: &str,
    signature: &str,
    client_agent: &str,
) -> Value {
    let who = Credentials::meeting(meeting_uuid, stream_id, signature);
    signaling_request_for(sequence, &who, client_agent, None)
}

/// `SIGNALING_HAND_SHAKE_REQ` with the id under `who.id_key`, and `buffer_data` when given
/// (`None` leaves it out: Zoom's default, true).
pub fn signaling_request_for(
    sequence: u64,
    who: &Credentials<'_>,
    client_agent: &str,
    buffer_data: Option<bool>,
) -> Value {
    let mut request = json!({
        "msg_type": msg::SIGNALING_HAND_SHAKE_REQ,
        "protocol_version": PROTOCOL_VERSION,
        "sequence": sequence,
        who.id_key: who.id,
        "rtms_stream_id": who.stream_id,
        "signature": who.signature,
        "rtms_client_agent": client_agent,
    });
    if let Some(buffer) = buffer_data {
        request["buffer_data"] = Value::Bool(buffer);
    }
    request
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
    let who = Credentials::meeting(meeting_uuid, stream_id, signature);
    data_request_for(sequence, &who, media_type, media_params)
}

/// `DATA_HAND_SHAKE_REQ` with the id under `who.id_key`.
pub fn data_request_for(
    sequence: u64,
    who: &Credentials<'_>,
    media_type: u32,
    media_params: Value,
) -> Value {
    json!({
        "msg_type": msg::DATA_HAND_SHAKE_REQ,
        "protocol_version": PROTOCOL_VERSION,
        "sequence": sequence,
        who.id_key: who.id,
        "rtms_stream_id": who.stream_id,
        "signature": who.signature,
        "media_type": media_type,
        "payload_encryption": false,
        "media_params": media_params,
    })
}

/// The id field and value a handshake request carries: the first of
/// [`crate::rtms::product::ID_KEYS`] present with a non-empty string.
pub fn request_id(request: &Value) -> Option<(&'static str, &str)> {
    super::product::ID_KEYS.iter().find_map(|key| {
        request
            .get(*key)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(|v| (*key, v))
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
    fn the_id_goes_under_the_products_key_and_buffer_data_only_when_set() {
        let who = Credentials {
            id_key: "engagement_id",
            id: "e1",
            stream_id: "sid",
            signature: "abc",
        };
        let s = signaling_request_for(1, &who, "zoomhost/1", Some(false));
        assert_eq!(s["engagement_id"], "e1");
        assert!(s.get("meeting_uuid").is_none());
        assert_eq!(s["buffer_data"], false);
        assert_eq!(request_id(&s), Some(("engagement_id", "e1")));
        let s = signaling_request_for(1, &who, "zoomhost/1", None);
        assert!(s.get("buffer_data").is_none());
        let d = data_request_for(2, &who, 1, json!({}));
        assert_eq!(request_id(&d), Some(("engagement_id", "e1")));
        assert_eq!(
            request_id(&signaling_request(1, "m", "s", "x", "a")),
            Some(("meeting_uuid", "m"))
        );
        assert_eq!(request_id(&json!({"meeting_uuid": ""})), None);
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
