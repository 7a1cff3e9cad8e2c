//! RTMS wire messages, client side (see the RTMS notes in the crate docs).
//!
//! The numbers and the shapes both sides share (message types, states, status codes,
//! media bits and codes, the handshake and keep-alive messages) are in
//! [`zoomhost_protocol::rtms`]. This module holds what only the client does with them:
//! mapping media kinds to the wire, the media params it asks for, reading the format the
//! server confirmed, and reading server messages leniently. Incoming messages may come in
//! text or binary frames; fields Zoom adds later are ignored, and numbers that arrive as
//! strings or floats are accepted.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use zoomhost_protocol::rtms::control;
use zoomhost_protocol::rtms::media::{
    bit, codec, content_type, data_opt, key, resolution, sample_rate,
};
use zoomhost_protocol::rtms::msg::event_type;
use zoomhost_protocol::rtms::product::Product;
use zoomhost_types::{AudioCodec, AudioFormat, ChatMessage, MediaKind};

use super::RtmsConfig;

pub use zoomhost_protocol::rtms::media::sample_rate::is_valid as valid_rate;

/// `rtms_client_agent` of the signaling handshake.
pub const CLIENT_AGENT: &str = concat!("zoomhost/", env!("CARGO_PKG_VERSION"));

/// The events the client subscribes to: active speaker and participant join/leave.
/// Never 1 (first packet) or 7 (media interrupted): Zoom sends those unasked and asks
/// clients not to subscribe to them.
pub const SUBSCRIBED_EVENTS: [u32; 3] = [
    event_type::ACTIVE_SPEAKER_CHANGE,
    event_type::PARTICIPANT_JOIN,
    event_type::PARTICIPANT_LEAVE,
];

/// The events a stream subscribes to: [`SUBSCRIBED_EVENTS`], plus video on/off (8, 9)
/// when it asks for individual video (not for Contact Center streams, whose 8 and 9 are
/// call events).
pub fn subscribed_events(config: &RtmsConfig, product: Product) -> Vec<u32> {
    let mut events = SUBSCRIBED_EVENTS.to_vec();
    if wants_individual_video(config) && product != Product::ContactCenter {
        events.extend([
            event_type::PARTICIPANT_VIDEO_ON,
            event_type::PARTICIPANT_VIDEO_OFF,
        ]);
    }
    events
}

/// Whether the stream asks for one participant's video (`data_opt` 4), which plugins
/// choose with a video subscription.
pub fn wants_individual_video(config: &RtmsConfig) -> bool {
    config.individual_video && config.media.contains(&MediaKind::Video)
}

/// The media-type bit of a kind.
pub fn media_bit(kind: MediaKind) -> u32 {
    match kind {
        MediaKind::Audio => bit::AUDIO,
        MediaKind::Video => bit::VIDEO,
        MediaKind::Share => bit::DESKSHARE,
        MediaKind::Transcript => bit::TRANSCRIPT,
        MediaKind::Chat => bit::CHAT,
    }
}

/// The key of a kind in the signaling reply's `media_server.server_urls`.
pub fn url_key(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => key::AUDIO,
        MediaKind::Video => key::VIDEO,
        MediaKind::Share => key::DESKSHARE,
        MediaKind::Transcript => key::TRANSCRIPT,
        MediaKind::Chat => key::CHAT,
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
            "content_type": content_type::RAW_AUDIO,
            "codec": codec_number(self.codec),
            "sample_rate": rate_number(self.sample_rate),
            "channel": self.channels,
            "data_opt": if self.per_speaker { data_opt::AUDIO_PER_SPEAKER } else { data_opt::AUDIO_MIXED },
            "send_rate": self.frame_ms,
        })
    }
}

fn codec_number(codec: AudioCodec) -> u32 {
    match codec {
        AudioCodec::L16 => codec::L16,
        AudioCodec::G711 => codec::G711,
        AudioCodec::G722 => codec::G722,
        AudioCodec::Opus => codec::OPUS,
    }
}

/// Hz to the wire's sample-rate code (16 kHz for rates RTMS does not deliver).
pub fn rate_number(hz: u32) -> u32 {
    sample_rate::code(hz).unwrap_or(sample_rate::KHZ_16)
}

/// The `media_params` object of a DATA_HAND_SHAKE_REQ for `kinds`.
pub fn media_params(kinds: &[MediaKind], config: &RtmsConfig) -> Value {
    let mut params = serde_json::Map::new();
    for kind in kinds {
        let value = match kind {
            MediaKind::Audio => config.audio.params(),
            MediaKind::Transcript => {
                // `src_language` is a language number; language detection stays Zoom's
                // default (on) unless configured.
                let mut t = json!({ "content_type": content_type::TEXT });
                if let Some(lang) = config.transcript_language {
                    t["src_language"] = Value::from(lang);
                }
                match config.enable_lid {
                    Some(lid) => t["enable_lid"] = Value::Bool(lid),
                    None if config.transcript_language.is_none() => {
                        t["enable_lid"] = Value::Bool(true)
                    }
                    None => {}
                }
                t
            }
            // Raw H.264, HD, 25 fps: what Zoom's samples ask for; the active speaker,
            // or one chosen participant (individual video).
            MediaKind::Video => json!({
                "content_type": content_type::RAW_VIDEO,
                "codec": codec::H264,
                "resolution": resolution::HD,
                "data_opt": if wants_individual_video(config) {
                    data_opt::VIDEO_SINGLE_INDIVIDUAL
                } else {
                    data_opt::VIDEO_ACTIVE_SPEAKER
                },
                "fps": 25
            }),
            MediaKind::Share => json!({
                "content_type": content_type::RAW_VIDEO,
                "codec": codec::H264,
                "resolution": resolution::HD,
                "fps": 5
            }),
            MediaKind::Chat => json!({ "content_type": content_type::TEXT }),
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
    let audio = match params.get(key::AUDIO) {
        Some(a) if a.is_object() => a,
        _ if params.get("sample_rate").is_some() || params.get("codec").is_some() => params,
        _ => return format,
    };
    if let Some(number) = audio.get("codec").and_then(lenient_value_u64) {
        format.codec = match u32::try_from(number) {
            Ok(codec::G711) => AudioCodec::G711,
            Ok(codec::G722) => AudioCodec::G722,
            Ok(codec::OPUS) => AudioCodec::Opus,
            _ => AudioCodec::L16,
        };
    }
    if let Some(rate) = audio.get("sample_rate").and_then(lenient_value_u64) {
        format.sample_rate = match sample_rate::hz(rate) {
            Some(hz) => hz,
            None if rate >= 8_000 => u32::try_from(rate).unwrap_or(requested.sample_rate),
            None => requested.sample_rate,
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

/// KEEP_ALIVE_RESP echoing the request's `sequence` and `timestamp` exactly.
pub fn keep_alive_response(request: &Incoming<'_>) -> Value {
    control::keep_alive_response(request.sequence.as_ref(), request.timestamp.as_ref())
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
    /// Transcript language: one of Zoom's language numbers
    /// ([`zoomhost_protocol::rtms::language`]), or text from older servers.
    #[serde(default)]
    pub language: Option<Value>,
    /// Contact Center: the party's channel (one per caller, agent ...), which keys its
    /// frames instead of `user_id`.
    #[serde(default)]
    pub channel_id: Option<Value>,
}

/// A chat message from a `MEDIA_DATA_CHAT` content. Zoom's 2026 chat sends `data` as a
/// JSON object (`chat_session`, `operation_type`, `message_id`, `sender`, `receiver`,
/// `files`, the text in `data`): the text, sender and `message_id` are read from it and
/// the whole object kept as `details`. Plain text is taken as the text itself.
pub fn chat_message(data: &str, user_id: u32, user_name: String, timestamp: u64) -> ChatMessage {
    let plain = || ChatMessage {
        user_id,
        user_name: user_name.clone(),
        timestamp,
        text: data.to_string(),
        message_id: None,
        details: None,
    };
    let Ok(Value::Object(chat)) = serde_json::from_str::<Value>(data) else {
        return plain();
    };
    let sender = chat.get("sender");
    let text = match chat.get("data").or_else(|| chat.get("text")) {
        Some(Value::String(t)) => t.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    ChatMessage {
        user_id: sender
            .and_then(|s| s.get("user_id"))
            .and_then(lenient_value_u64)
            .map_or(user_id, |id| id as u32),
        user_name: sender
            .and_then(|s| s.get("user_name"))
            .and_then(Value::as_str)
            .map_or(user_name.clone(), str::to_string),
        timestamp,
        text,
        message_id: chat.get("message_id").map(|id| match id {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }),
        details: Some(data.to_string()),
    }
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
    fn params_cover_each_kind() {
        let mut config = RtmsConfig::new("id", zoomhost_protocol::Secret::new("s"));
        let p = media_params(&[MediaKind::Audio, MediaKind::Transcript], &config);
        assert_eq!(p["audio"]["sample_rate"], 1);
        assert_eq!(p["audio"]["data_opt"], 1);
        assert_eq!(p["transcript"]["content_type"], 5);
        assert_eq!(p["transcript"]["enable_lid"], true);
        assert!(p.get("video").is_none());
        config.transcript_language = Some(9);
        config.enable_lid = Some(false);
        config.media.push(MediaKind::Video);
        config.individual_video = true;
        let p = media_params(&[MediaKind::Transcript, MediaKind::Video], &config);
        assert_eq!(
            p["transcript"],
            json!({"content_type": 5, "src_language": 9, "enable_lid": false})
        );
        assert_eq!(p["video"]["data_opt"], 4);
        assert_eq!(
            subscribed_events(&config, Product::Meeting),
            vec![2, 3, 4, 8, 9]
        );
        assert_eq!(
            subscribed_events(&config, Product::ContactCenter),
            vec![2, 3, 4]
        );
        config.enable_lid = None;
        let p = media_params(&[MediaKind::Transcript], &config);
        assert_eq!(
            p["transcript"],
            json!({"content_type": 5, "src_language": 9})
        );
    }

    #[test]
    fn chat_reads_json_content_and_falls_back_to_text() {
        let json_chat = r#"{"chat_session":{"type":1},"operation_type":1,"message_id":"m-1","sender":{"user_id":42,"user_name":"Ada"},"receiver":{"user_id":0},"data":"hello"}"#;
        let m = chat_message(json_chat, 0, String::new(), 5);
        assert_eq!(m.text, "hello");
        assert_eq!(m.user_id, 42);
        assert_eq!(m.user_name, "Ada");
        assert_eq!(m.message_id.as_deref(), Some("m-1"));
        assert_eq!(m.details.as_deref(), Some(json_chat));
        let m = chat_message("just text", 7, "Bo".into(), 5);
        assert_eq!(
            (m.text.as_str(), m.user_id, m.message_id),
            ("just text", 7, None)
        );
        assert_eq!(chat_message("[1]", 7, "Bo".into(), 5).text, "[1]");
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
