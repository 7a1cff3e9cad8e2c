//! Which partition an event belongs to: all events of one meeting (webinar, Video SDK
//! session, Contact Center engagement, Phone call) land in the same partition, so a
//! worker owning it sees them in order.
//!
//! The meeting is the first of these in the event payload: `meeting_uuid`,
//! `webinar_uuid`, `session_id`, `engagement_id`, `call_id` (RTMS lifecycle events), then
//! `object.uuid` (meeting and webinar events, recordings), `object.meeting_uuid`,
//! `object.webinar_uuid`, `object.session_id`, `object.engagement_id`, `object.call_id`,
//! and last `object.id`; the same order the runtime uses to pick a plugin instance, so a
//! meeting's partition and its instance agree. The id is hashed with 64-bit FNV-1a
//! (stable across runs, builds and machines) and taken modulo the partition count. An
//! event that names no meeting goes to partition 0.

use serde_json::Value;
use zoomhost_protocol::fnv::fnv1a;

/// The meeting an event payload (JSON text) names, if any.
pub fn meeting_of_payload(payload: &str) -> Option<String> {
    let p: Value = serde_json::from_str(payload).ok()?;
    const PRODUCT: [&str; 5] = [
        "meeting_uuid",
        "webinar_uuid",
        "session_id",
        "engagement_id",
        "call_id",
    ];
    let text = |v: Option<&Value>| match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let product = |v: &Value| PRODUCT.iter().find_map(|k| text(v.get(k)));
    product(&p).or_else(|| {
        let object = p.get("object")?;
        text(object.get("uuid"))
            .or_else(|| product(object))
            .or_else(|| text(object.get("id")))
    })
}

/// The partition, of `partitions`, of a meeting id (0 for none or an empty id).
pub fn of_meeting(meeting: Option<&str>, partitions: u32) -> u32 {
    match meeting {
        Some(m) if !m.is_empty() && partitions > 1 => {
            (fnv1a(m.as_bytes()) % u64::from(partitions)) as u32
        }
        _ => 0,
    }
}

/// The partition of an event, from its payload (JSON text).
pub fn of_event_payload(payload: &str, partitions: u32) -> u32 {
    of_meeting(meeting_of_payload(payload).as_deref(), partitions)
}

/// The subject an event of `partition` is published on.
pub fn subject(partition: u32) -> String {
    format!("{}.{partition}", super::EVENT_SUBJECT_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meeting_is_found_where_zoom_puts_it() {
        let cases = [
            (r#"{"meeting_uuid":"m1","object":{"uuid":"x"}}"#, Some("m1")),
            (r#"{"webinar_uuid":"w1"}"#, Some("w1")),
            (r#"{"engagement_id":"e1"}"#, Some("e1")),
            (r#"{"object":{"uuid":"u1","id":85}}"#, Some("u1")),
            (r#"{"object":{"session_id":"s1","id":7}}"#, Some("s1")),
            (r#"{"object":{"id":85}}"#, Some("85")),
            (r#"{"object":{"uuid":""}}"#, None),
            (r#"{"account_id":"a"}"#, None),
            ("not json", None),
        ];
        for (payload, want) in cases {
            assert_eq!(meeting_of_payload(payload).as_deref(), want, "{payload}");
        }
    }

    #[test]
    fn partitions_are_stable_and_spread() {
        // FNV-1a's published test vector: a stable hash, whatever the build.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let a = of_event_payload(r#"{"object":{"uuid":"abc=="}}"#, 64);
        assert_eq!(a, of_meeting(Some("abc=="), 64));
        assert_eq!(of_event_payload(r#"{"meeting_uuid":"abc=="}"#, 64), a);
        assert_eq!(of_event_payload("{}", 64), 0);
        let used: std::collections::HashSet<u32> = (0..1000)
            .map(|i| of_meeting(Some(&format!("meeting-{i}")), 64))
            .collect();
        assert!(used.len() > 60, "1000 meetings used {} of 64", used.len());
        assert!(used.iter().all(|p| *p < 64));
        assert_eq!(subject(7), "zoomhost.events.7");
    }
}
