//! What a `*.rtms_started` event says about a stream, and which product it is for.

use serde_json::Value;
use zoomhost_protocol::rtms::product::Product;
use zoomhost_types::SessionKind;

/// What `*.rtms_started` says about a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamStart {
    /// Meeting, webinar, Video SDK session, Contact Center engagement or Zoom Phone call.
    pub kind: SessionKind,
    /// The session's id (`meeting_uuid`, `webinar_uuid`, `session_id`, `engagement_id` or
    /// `call_id`, whatever its kind); the handshakes carry it and sign over it.
    pub meeting_uuid: String,
    /// `rtms_stream_id`.
    pub stream_id: String,
    /// Signaling URLs (`ws`/`wss` only), in the order to try.
    pub server_urls: Vec<String>,
}

impl StreamStart {
    /// Reads a `*.rtms_started` payload (fields flat under `payload`; an `object` wrapper
    /// is tolerated). `server_urls` is a comma-separated list of URLs for different
    /// transports: entries that are not `ws(s)` are skipped, and only a list without any
    /// `ws(s)` URL is refused. The error names the missing field.
    pub fn from_event(name: &str, payload: &Value) -> Result<StreamStart, String> {
        let kind = session_kind(name);
        let body = match payload.get("object") {
            Some(o) if o.get("rtms_stream_id").is_some() => o,
            _ => payload,
        };
        let text = |key: &str| -> Option<String> {
            match body.get(key) {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            }
        };
        let id_keys: &[&str] = match kind {
            SessionKind::Meeting => &["meeting_uuid"],
            SessionKind::Webinar => &["webinar_uuid", "meeting_uuid"],
            SessionKind::VideoSdk => &["session_id", "meeting_uuid"],
            SessionKind::ContactCenter => &["engagement_id", "meeting_uuid"],
            SessionKind::Phone => &["call_id", "meeting_uuid"],
        };
        let meeting_uuid = id_keys
            .iter()
            .find_map(|k| text(k))
            .ok_or_else(|| format!("{name}: payload has no {}", id_keys[0]))?;
        let stream_id = text("rtms_stream_id")
            .ok_or_else(|| format!("{name}: payload has no rtms_stream_id"))?;
        let listed: Vec<String> = match body.get("server_urls") {
            Some(Value::String(s)) => s
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_string)
                .collect(),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        };
        if listed.is_empty() {
            return Err(format!("{name}: payload has no server_urls"));
        }
        let (server_urls, skipped): (Vec<String>, Vec<String>) =
            listed.into_iter().partition(|url| is_websocket_url(url));
        if server_urls.is_empty() {
            return Err(format!(
                "{name}: server_urls has no ws(s) URL (only {skipped:?})"
            ));
        }
        if !skipped.is_empty() {
            tracing::debug!(
                stream = %stream_id,
                "server_urls entries for other transports skipped: {skipped:?}"
            );
        }
        Ok(StreamStart {
            kind,
            meeting_uuid,
            stream_id,
            server_urls,
        })
    }

    /// The product of the stream.
    pub fn product(&self) -> Product {
        product(self.kind)
    }
}

fn is_websocket_url(url: &str) -> bool {
    matches!(url::Url::parse(url), Ok(u) if matches!(u.scheme(), "ws" | "wss"))
}

/// The session kind an RTMS event name belongs to.
pub(super) fn session_kind(name: &str) -> SessionKind {
    match Product::of_event(name) {
        Some(Product::Webinar) => SessionKind::Webinar,
        Some(Product::VideoSdk) => SessionKind::VideoSdk,
        Some(Product::ContactCenter) => SessionKind::ContactCenter,
        Some(Product::Phone) => SessionKind::Phone,
        Some(Product::Meeting) | None => SessionKind::Meeting,
    }
}

/// The wire product of a session kind.
pub fn product(kind: SessionKind) -> Product {
    match kind {
        SessionKind::Meeting => Product::Meeting,
        SessionKind::Webinar => Product::Webinar,
        SessionKind::VideoSdk => Product::VideoSdk,
        SessionKind::ContactCenter => Product::ContactCenter,
        SessionKind::Phone => Product::Phone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn starts_parse_every_variant() {
        let p = json!({"meeting_uuid":"m==","rtms_stream_id":"s1","server_urls":"wss://a/x, wss://b/y","operator_id":"o"});
        let s = StreamStart::from_event("meeting.rtms_started", &p).unwrap();
        assert_eq!(s.server_urls, vec!["wss://a/x", "wss://b/y"]);
        assert_eq!(s.kind, SessionKind::Meeting);
        let w = json!({"webinar_uuid":"w","rtms_stream_id":"s","server_urls":"wss://a"});
        assert_eq!(
            StreamStart::from_event("webinar.rtms_started", &w)
                .unwrap()
                .meeting_uuid,
            "w"
        );
        let v = json!({"session_id":"v","rtms_stream_id":"s","server_urls":"wss://a"});
        assert_eq!(
            StreamStart::from_event("session.rtms_started", &v)
                .unwrap()
                .kind,
            SessionKind::VideoSdk
        );
        let c = json!({"engagement_id":"e","rtms_stream_id":"s","server_urls":"wss://a"});
        let c = StreamStart::from_event("contact_center.voice_rtms_started", &c).unwrap();
        assert_eq!(c.kind, SessionKind::ContactCenter);
        assert_eq!(c.product().id_key(), "engagement_id");
        let ph = json!({"call_id":"c-1","rtms_stream_id":"s","server_urls":"wss://a"});
        let ph = StreamStart::from_event("phone.rtms_started", &ph).unwrap();
        assert_eq!(
            (ph.kind, ph.meeting_uuid.as_str()),
            (SessionKind::Phone, "c-1")
        );
        assert_eq!(ph.product().id_key(), "call_id");
    }

    #[test]
    fn other_transports_are_skipped_not_fatal() {
        let p = json!({"meeting_uuid":"m","rtms_stream_id":"s",
            "server_urls":"srt://media.zoom.us:9000,wss://a/x, https://b"});
        let s = StreamStart::from_event("meeting.rtms_started", &p).unwrap();
        assert_eq!(s.server_urls, vec!["wss://a/x"]);
    }

    #[test]
    fn bad_starts_name_the_field() {
        let e = StreamStart::from_event(
            "meeting.rtms_started",
            &json!({"rtms_stream_id":"s","server_urls":"wss://a"}),
        )
        .unwrap_err();
        assert!(e.contains("meeting_uuid"), "{e}");
        let e = StreamStart::from_event(
            "meeting.rtms_started",
            &json!({"meeting_uuid":"m","server_urls":"wss://a"}),
        )
        .unwrap_err();
        assert!(e.contains("rtms_stream_id"), "{e}");
        let e = StreamStart::from_event(
            "meeting.rtms_started",
            &json!({"meeting_uuid":"m","rtms_stream_id":"s","server_urls":"http://a, srt://b"}),
        )
        .unwrap_err();
        assert!(e.contains("no ws(s) URL"), "{e}");
    }
}
