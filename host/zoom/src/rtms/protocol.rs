//! RTMS wire messages, client side (see the RTMS notes in the crate docs).
//!
//! Every message is a JSON object with an integer `msg_type`. Incoming messages may come
//! in text or binary frames; fields Zoom adds later are ignored, and numbers that arrive
//! as strings or floats are accepted. Outgoing messages are built here so the exact wire
//! shapes live in one place.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use zoomhost_types::{AudioCodec, AudioFormat, MediaKind};

/// Message types.
pub mod msg {
    /// Client → signaling: handshake request.
    pub const SIGNALING_HAND_SHAKE_REQ: u32 = 1;
    /// Signaling → client: handshake response with the media server URLs.
    pub const SIGNALING_HAND_SHAKE_RESP: u32 = 2;
    /// Client → media: handshake request.
    pub const DATA_HAND_SHAKE_REQ: u32 = 3;
    /// Media → client: handshake response with the effective media params.
    pub const DATA_HAND_SHAKE_RESP: u32 = 4;
    /// Client → signaling: event subscription.
    pub const EVENT_SUBSCRIPTION: u32 = 5;
    /// Signaling → client: an event (active speaker, join, leave, ...).
    pub const EVENT_UPDATE: u32 = 6;
    /// Client → signaling: media handshakes done, start sending.
    pub const CLIENT_READY_ACK: u32 = 7;
    /// Signaling → client: stream state.
    pub const STREAM_STATE_UPDATE: u32 = 8;
    /// Signaling → client: session state.
    pub const SESSION_STATE_UPDATE: u32 = 9;
    /// Session state request.
    pub const SESSION_STATE_REQ: u32 = 10;
    /// Session state response.
    pub const SESSION_STATE_RESP: u32 = 11;
    /// Server → client on every socket: keep-alive request.
    pub const KEEP_ALIVE_REQ: u32 = 12;
    /// Client → server on the same socket: keep-alive response.
    pub const KEEP_ALIVE_RESP: u32 = 13;
    /// Audio data.
    pub const MEDIA_DATA_AUDIO: u32 = 14;
    /// Video data.
    pub const MEDIA_DATA_VIDEO: u32 = 15;
    /// Screen-share data.
    pub const MEDIA_DATA_SHARE: u32 = 16;
    /// Transcript data.
    pub const MEDIA_DATA_TRANSCRIPT: u32 = 17;
    /// Chat data.
    pub const MEDIA_DATA_CHAT: u32 = 18;
    /// Stream state request.
    pub const STREAM_STATE_REQ: u32 = 19;
    /// Stream state response.
    pub const STREAM_STATE_RESP: u32 = 20;
    /// Stream close request.
    pub const STREAM_CLOSE_REQ: u32 = 21;
    /// Stream close response.
    pub const STREAM_CLOSE_RESP: u32 = 22;
}

/// `event_type` values of EVENT_UPDATE / EVENT_SUBSCRIPTION.
pub mod event_type {
    /// First packet timestamp.
    pub const FIRST_PACKET_TIMESTAMP: u32 = 1;
    /// Active speaker changed.
    pub const ACTIVE_SPEAKER_CHANGE: u32 = 2;
    /// Participants joined.
    pub const PARTICIPANT_JOIN: u32 = 3;
    /// Participants left.
    pub const PARTICIPANT_LEAVE: u32 = 4;
}

/// The `stream_state` value that ends a stream.
pub const STREAM_STATE_TERMINATED: u32 = 4;

pub use zoomhost_protocol::rtms::signature;

/// The media-type bit of a kind (audio 1, video 2, deskshare 4, transcript 8, chat 16).
pub fn media_bit(kind: MediaKind) -> u32 {
    match kind {
        MediaKind::Audio => 1,
        MediaKind::Video => 2,
        MediaKind::Share => 4,
        MediaKind::Transcript => 8,
        MediaKind::Chat => 16,
    }
}

/// The key of a kind in the signaling reply's `media_server.server_urls`.
pub fn url_key(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
        MediaKind::Share => "deskshare",
        MediaKind::Transcript => "transcript",
        MediaKind::Chat => "chat",
    }
}

/// The name Zoom's RTMS status table gives a non-zero `status_code`. Zoom's published
/// tables differ between pages, so callers always report the number too.
pub fn status_name(code: i64) -> Option<&'static str> {
    const NAMES: [&str; 44] = [
        "STATUS_OK",
        "STATUS_INVALID_MESSAGE_TYPE",
        "STATUS_INVALID_RTMS_STREAM_ID",
        "STATUS_INVALID_SIGNATURE",
        "STATUS_INVALID_PAYLOAD",
        "STATUS_INVALID_EVENTS",
        "STATUS_INVALID_EVENT_TYPE",
        "STATUS_INVALID_MEDIA_TYPE",
        "STATUS_DUPLICATE_SIGNAL_REQUEST",
        "STATUS_MEDIA_TYPE_AUDIO_NOT_SUPPORT",
        "STATUS_MEDIA_TYPE_VIDEO_NOT_SUPPORT",
        "STATUS_MEDIA_TYPE_DESKSHARE_NOT_SUPPORT",
        "STATUS_MEDIA_TYPE_TRANSCRIPT_NOT_SUPPORT",
        "STATUS_MEDIA_TYPE_CHAT_NOT_SUPPORT",
        "STATUS_MEDIA_TYPE_INVALID_VALUE",
        "STATUS_MEDIA_DATA_ALL_CONNECTION_EXIST",
        "STATUS_DUPLICATE_MEDIA_DATA_CONNECTION",
        "STATUS_INVALID_MEDIA_PARAMS",
        "STATUS_INVALID_MEDIA_AUDIO_PARAMS",
        "STATUS_INVALID_MEDIA_AUDIO_CONTENT_TYPE",
        "STATUS_INVALID_MEDIA_AUDIO_SAMPLE_RATE",
        "STATUS_INVALID_MEDIA_AUDIO_CHANNEL",
        "STATUS_INVALID_MEDIA_AUDIO_CODEC",
        "STATUS_INVALID_MEDIA_AUDIO_DATA_OPT",
        "STATUS_INVALID_MEDIA_AUDIO_SEND_RATE",
        "STATUS_INVALID_MEDIA_VIDEO_PARAMS",
        "STATUS_INVALID_MEDIA_VIDEO_CONTENT_TYPE",
        "STATUS_INVALID_MEDIA_VIDEO_CODEC",
        "STATUS_INVALID_MEDIA_VIDEO_RESOLUTION",
        "STATUS_INVALID_MEDIA_VIDEO_DATA_OPT",
        "STATUS_INVALID_MEDIA_VIDEO_FPS",
        "STATUS_INVALID_MEDIA_DESKSHARE_PARAMS",
        "STATUS_INVALID_MEDIA_DESKSHARE_CONTENT_TYPE",
        "STATUS_INVALID_MEDIA_DESKSHARE_CODEC",
        "STATUS_INVALID_MEDIA_DESKSHARE_RESOLUTION",
        "STATUS_INVALID_MEDIA_DESKSHARE_FPS",
        "STATUS_INVALID_MEDIA_TRANSCRIPT_PARAMS",
        "STATUS_INVALID_MEDIA_TRANSCRIPT_CONTENT_TYPE",
        "STATUS_INVALID_MEDIA_CHAT_PARAMS",
        "STATUS_INVALID_MEDIA_CHAT_CONTENT_TYPE",
        "STATUS_INVALID_RTMS_SESSION_ID",
        "STATUS_INVALID_CLIENT_READY_ACK",
        "STATUS_INVALID_EVENT_SUBSCRIBE",
        "STATUS_INVALID_MEDIA_TRANSCRIPT_SOURCE_LANGUAGE",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .filter(|_| code != 0)
}

/// `"status 3 (STATUS_INVALID_SIGNATURE in Zoom's status table): reason"`.
pub fn describe_status(code: i64, reason: Option<&str>) -> String {
    let mut text = format!("status_code {code}");
    if let Some(name) = status_name(code) {
        text.push_str(&format!(" ({name} in Zoom's RTMS status table)"));
    }
    if let Some(reason) = reason.filter(|r| !r.is_empty()) {
        text.push_str(&format!(": {reason}"));
    }
    text
}

/// The name of a stop reason (`stop_reason` / `reason` of stream state updates and of
/// `*.rtms_stopped`).
pub fn stop_reason_name(reason: i64) -> &'static str {
    match reason {
        1 => "host triggered",
        2 => "user triggered",
        3 => "user left",
        4 => "user ejected",
        5 => "host disabled app",
        6 => "meeting ended",
        7 => "stream canceled",
        8 => "stream revoked",
        9 => "all apps disabled",
        10 => "internal exception",
        11 => "connection timeout",
        12..=16 => "connection interrupted",
        17 => "exit signal",
        18 => "authentication failure",
        19 => "await-reconnection timeout",
        20 => "receiver request close",
        24 => "keep-alive timeout",
        25 => "manual API",
        26 => "streaming not supported",
        _ => "unknown",
    }
}

/// The audio the client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioRequest {
    /// Codec.
    pub codec: AudioCodec,
    /// Hz: 8000, 16000, 32000 or 48000.
    pub sample_rate: u32,
    /// 1 or 2.
    pub channels: u8,
    /// Milliseconds per message (a multiple of 20).
    pub frame_ms: u32,
    /// One stream per speaker (`data_opt` 2) instead of the mixed stream (1).
    pub per_speaker: bool,
}

impl Default for AudioRequest {
    /// Zoom's wire default: L16, 16 kHz, mono, mixed, 20 ms.
    fn default() -> Self {
        Self {
            codec: AudioCodec::L16,
            sample_rate: 16_000,
            channels: 1,
            frame_ms: 20,
            per_speaker: false,
        }
    }
}

impl AudioRequest {
    /// The format as handed to plugins when the server confirms exactly what was asked.
    pub fn format(&self) -> AudioFormat {
        AudioFormat {
            codec: self.codec,
            sample_rate: self.sample_rate,
            channels: self.channels,
            frame_ms: self.frame_ms,
        }
    }

    /// The `media_params.audio` object.
    pub fn params(&self) -> Value {
        json!({
            "content_type": 2,
            "codec": codec_number(self.codec),
            "sample_rate": rate_number(self.sample_rate),
            "channel": self.channels,
            "data_opt": if self.per_speaker { 2 } else { 1 },
            "send_rate": self.frame_ms,
        })
    }
}

fn codec_number(codec: AudioCodec) -> u32 {
    match codec {
        AudioCodec::L16 => 1,
        AudioCodec::G711 => 2,
        AudioCodec::G722 => 3,
        AudioCodec::Opus => 4,
    }
}

/// Hz to the wire's sample-rate enum.
pub fn rate_number(hz: u32) -> u32 {
    match hz {
        8_000 => 0,
        32_000 => 2,
        48_000 => 3,
        _ => 1,
    }
}

/// Whether `hz` is a rate RTMS can deliver.
pub fn valid_rate(hz: u32) -> bool {
    matches!(hz, 8_000 | 16_000 | 32_000 | 48_000)
}

/// The `media_params` object of a DATA_HAND_SHAKE_REQ for `kinds`.
pub fn media_params(
    kinds: &[MediaKind],
    audio: &AudioRequest,
    transcript_language: Option<&str>,
) -> Value {
    let mut params = serde_json::Map::new();
    for kind in kinds {
        let value = match kind {
            MediaKind::Audio => audio.params(),
            MediaKind::Transcript => {
                let mut t = json!({ "content_type": 5 });
                if let Some(lang) = transcript_language {
                    t["src_language"] = lang
                        .parse::<i64>()
                        .map_or_else(|_| Value::String(lang.to_string()), Value::from);
                } else {
                    t["enable_lid"] = Value::Bool(true);
                }
                t
            }
            // Raw H.264, HD, active speaker, 25 fps: what Zoom's samples ask for.
            MediaKind::Video => json!({
                "content_type": 3, "codec": 7, "resolution": 2, "data_opt": 3, "fps": 25
            }),
            MediaKind::Share => json!({
                "content_type": 3, "codec": 7, "resolution": 2, "fps": 5
            }),
            MediaKind::Chat => json!({ "content_type": 5 }),
        };
        params.insert(url_key(*kind).to_string(), value);
    }
    Value::Object(params)
}

/// The audio format a DATA_HAND_SHAKE_RESP confirms: its `media_params.audio` (or a
/// flat `media_params` with audio fields) read over the request; fields it leaves out
/// keep the requested values.
pub fn confirmed_audio(params: Option<&Value>, requested: &AudioRequest) -> AudioFormat {
    let mut format = requested.format();
    let Some(params) = params else {
        return format;
    };
    let audio = match params.get("audio") {
        Some(a) if a.is_object() => a,
        _ if params.get("sample_rate").is_some() || params.get("codec").is_some() => params,
        _ => return format,
    };
    if let Some(codec) = audio.get("codec").and_then(lenient_value_u64) {
        format.codec = match codec {
            2 => AudioCodec::G711,
            3 => AudioCodec::G722,
            4 => AudioCodec::Opus,
            _ => AudioCodec::L16,
        };
    }
    if let Some(rate) = audio.get("sample_rate").and_then(lenient_value_u64) {
        format.sample_rate = match rate {
            0 => 8_000,
            1 => 16_000,
            2 => 32_000,
            3 => 48_000,
            hz if hz >= 8_000 => u32::try_from(hz).unwrap_or(requested.sample_rate),
            _ => requested.sample_rate,
        };
    }
    if let Some(ch) = audio.get("channel").and_then(lenient_value_u64) {
        if (1..=2).contains(&ch) {
            format.channels = ch as u8;
        }
    }
    if let Some(ms) = audio.get("send_rate").and_then(lenient_value_u64) {
        if ms > 0 {
            format.frame_ms = u32::try_from(ms).unwrap_or(requested.frame_ms);
        }
    }
    format
}

/// SIGNALING_HAND_SHAKE_REQ.
pub fn signaling_handshake(
    sequence: u64,
    meeting_uuid: &str,
    stream_id: &str,
    signature: &str,
) -> Value {
    json!({
        "msg_type": msg::SIGNALING_HAND_SHAKE_REQ,
        "protocol_version": 1,
        "sequence": sequence,
        "meeting_uuid": meeting_uuid,
        "rtms_stream_id": stream_id,
        "signature": signature,
        "rtms_client_agent": concat!("zoomhost/", env!("CARGO_PKG_VERSION")),
    })
}

/// DATA_HAND_SHAKE_REQ.
pub fn data_handshake(
    sequence: u64,
    meeting_uuid: &str,
    stream_id: &str,
    signature: &str,
    media_type: u32,
    media_params: Value,
) -> Value {
    json!({
        "msg_type": msg::DATA_HAND_SHAKE_REQ,
        "protocol_version": 1,
        "sequence": sequence,
        "meeting_uuid": meeting_uuid,
        "rtms_stream_id": stream_id,
        "signature": signature,
        "media_type": media_type,
        "payload_encryption": false,
        "media_params": media_params,
    })
}

/// CLIENT_READY_ACK.
pub fn ready_ack(stream_id: &str) -> Value {
    json!({ "msg_type": msg::CLIENT_READY_ACK, "rtms_stream_id": stream_id })
}

/// EVENT_SUBSCRIPTION for active speaker and participant join/leave.
pub fn event_subscription() -> Value {
    let events: Vec<Value> = [
        event_type::ACTIVE_SPEAKER_CHANGE,
        event_type::PARTICIPANT_JOIN,
        event_type::PARTICIPANT_LEAVE,
    ]
    .iter()
    .map(|t| json!({ "event_type": t, "subscribe": true }))
    .collect();
    json!({ "msg_type": msg::EVENT_SUBSCRIPTION, "events": events })
}

/// KEEP_ALIVE_RESP echoing the request's `sequence` and `timestamp` exactly.
pub fn keep_alive_response(request: &Incoming<'_>) -> Value {
    let mut out = json!({ "msg_type": msg::KEEP_ALIVE_RESP });
    if let Some(seq) = &request.sequence {
        out["sequence"] = seq.clone();
    }
    if let Some(ts) = &request.timestamp {
        out["timestamp"] = ts.clone();
    }
    out
}

/// Any server message, with the fields the client reads. Borrowing keeps the hot path
/// (audio) free of copies until base64 decoding.
#[derive(Debug, Deserialize)]
pub struct Incoming<'a> {
    /// The message type.
    pub msg_type: u32,
    /// Handshake result.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub status_code: Option<i64>,
    /// Free-text reason of a failure, or a stop reason number in state updates.
    #[serde(default)]
    pub reason: Option<Value>,
    /// Signaling reply: the media server URLs.
    #[serde(default)]
    pub media_server: Option<Value>,
    /// Media reply: the effective params.
    #[serde(default)]
    pub media_params: Option<Value>,
    /// Data messages.
    #[serde(default, borrow)]
    pub content: Option<Content<'a>>,
    /// EVENT_UPDATE.
    #[serde(default)]
    pub event: Option<Value>,
    /// State updates.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub state: Option<i64>,
    /// Session state updates.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub stop_reason: Option<i64>,
    /// Keep-alive: echoed as it came.
    #[serde(default)]
    pub sequence: Option<Value>,
    /// Keep-alive / updates: echoed as it came.
    #[serde(default)]
    pub timestamp: Option<Value>,
}

/// The `content` of a data message.
#[derive(Debug, Default, Deserialize)]
pub struct Content<'a> {
    /// Speaker (0 = the mixed stream).
    #[serde(default, deserialize_with = "lenient_u64")]
    pub user_id: Option<u64>,
    /// Speaker name.
    #[serde(default, borrow)]
    pub user_name: Option<Cow<'a, str>>,
    /// Base64 media or text.
    #[serde(default, borrow)]
    pub data: Option<Cow<'a, str>>,
    /// Milliseconds since the epoch.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub timestamp: Option<u64>,
    /// Transcript start.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub start_time: Option<u64>,
    /// Transcript end.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub end_time: Option<u64>,
    /// Transcript language.
    #[serde(default)]
    pub language: Option<Value>,
}

/// Parses one message from a text or binary frame's bytes.
pub fn parse(bytes: &[u8]) -> Result<Incoming<'_>, String> {
    serde_json::from_slice(bytes).map_err(|e| {
        let end = bytes.len().min(120);
        format!(
            "not an RTMS message ({e}): {}",
            String::from_utf8_lossy(&bytes[..end])
        )
    })
}

/// A number given as an integer, a float or a numeric string.
pub fn lenient_value_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn lenient_value_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(Option::<Value>::deserialize(d)?
        .as_ref()
        .and_then(lenient_value_u64))
}

fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(Option::<Value>::deserialize(d)?
        .as_ref()
        .and_then(lenient_value_i64))
}

/// A participant list of EVENT_UPDATE (`participants:[{user_id,user_name}]`, or a single
/// `user_id`/`user_name` pair as active-speaker updates carry).
pub fn participants(event: &Value) -> Vec<(u32, String)> {
    let one = |p: &Value| {
        let id = p.get("user_id").and_then(lenient_value_u64)?;
        let name = p
            .get("user_name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Some((id as u32, name))
    };
    match event.get("participants").and_then(Value::as_array) {
        Some(list) => list.iter().filter_map(one).collect(),
        None => one(event).into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmed_format_reads_nested_flat_and_missing_params() {
        let req = AudioRequest::default();
        let f = confirmed_audio(None, &req);
        assert_eq!((f.sample_rate, f.channels, f.frame_ms), (16_000, 1, 20));
        let nested =
            json!({"audio": {"sample_rate": 3, "channel": 2, "codec": 1, "send_rate": 40}});
        let f = confirmed_audio(Some(&nested), &req);
        assert_eq!((f.sample_rate, f.channels, f.frame_ms), (48_000, 2, 40));
        let flat = json!({"sample_rate": "0", "codec": 4});
        let f = confirmed_audio(Some(&flat), &req);
        assert_eq!(f.sample_rate, 8_000);
        assert_eq!(f.codec, AudioCodec::Opus);
        let hz = json!({"audio": {"sample_rate": 32000}});
        assert_eq!(confirmed_audio(Some(&hz), &req).sample_rate, 32_000);
    }

    #[test]
    fn incoming_accepts_loose_numbers_and_borrowed_content() {
        let text = br#"{"msg_type":14,"content":{"user_id":"16778240","user_name":"Ada","data":"AAEC","timestamp":1752345678901.0}}"#;
        let m = parse(text).unwrap();
        let c = m.content.unwrap();
        assert_eq!(c.user_id, Some(16_778_240));
        assert_eq!(c.timestamp, Some(1_752_345_678_901));
        assert_eq!(c.data.as_deref(), Some("AAEC"));
        assert!(parse(b"{\"msg\":1}").is_err());
        assert!(parse(b"not json").unwrap_err().contains("not json"));
    }

    #[test]
    fn keep_alive_echoes_both_fields_verbatim() {
        let m = parse(br#"{"msg_type":12,"sequence":7,"timestamp":1752345678901}"#).unwrap();
        assert_eq!(
            keep_alive_response(&m),
            json!({"msg_type": 13, "sequence": 7, "timestamp": 1752345678901u64})
        );
    }

    #[test]
    fn status_names_are_reported_with_the_number() {
        assert_eq!(
            describe_status(3, Some("bad")),
            "status_code 3 (STATUS_INVALID_SIGNATURE in Zoom's RTMS status table): bad"
        );
        assert_eq!(describe_status(99, None), "status_code 99");
        assert_eq!(status_name(0), None);
    }

    #[test]
    fn params_cover_each_kind() {
        let p = media_params(
            &[MediaKind::Audio, MediaKind::Transcript],
            &AudioRequest::default(),
            None,
        );
        assert_eq!(p["audio"]["sample_rate"], 1);
        assert_eq!(p["audio"]["data_opt"], 1);
        assert_eq!(p["transcript"]["content_type"], 5);
        assert!(p.get("video").is_none());
    }

    #[test]
    fn participants_from_list_or_single() {
        let list =
            json!({"participants":[{"user_id":1,"user_name":"A"},{"user_id":2,"user_name":"B"}]});
        assert_eq!(participants(&list).len(), 2);
        let one = json!({"user_id":5,"user_name":"E"});
        assert_eq!(participants(&one), vec![(5, "E".to_string())]);
    }
}
