//! Which instance of a plugin a delivery goes to: plugins with `instances = N` run N
//! instances, and every event and media session of one meeting goes to the same one.
//!
//! The shard key is the meeting's identity (a meeting, webinar, Video SDK session,
//! Contact Center engagement or Phone call): for an event, the first of these in its
//! payload: `meeting_uuid`, `webinar_uuid`, `session_id`, `engagement_id`, `call_id`
//! (RTMS lifecycle events), then `object.uuid` (meeting and webinar events, recordings),
//! `object.meeting_uuid`, `object.webinar_uuid`, `object.session_id`,
//! `object.engagement_id`, `object.call_id`, and last `object.id`; for a media stream,
//! its `meeting_id` (the id its start event named, so a stream lands with its meeting's
//! events). The key is hashed with 64-bit FNV-1a (stable across runs, builds and
//! machines) and taken modulo N. An event that names no meeting (an app deauthorisation,
//! a user event) goes to instance 0.
//!
//! The router works the key out once per event, not once per plugin, and only when a
//! plugin it reaches has more than one instance.

use std::hash::Hasher as _;

use serde::Deserialize;

/// A meeting's shard key, hashed; `None` for inputs that name no meeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShardKey(Option<u64>);

impl ShardKey {
    /// The key of a meeting id (an empty id names no meeting).
    pub fn of_meeting(meeting_id: &str) -> Self {
        if meeting_id.is_empty() {
            return Self(None);
        }
        let mut h = fnv::FnvHasher::default();
        h.write(meeting_id.as_bytes());
        Self(Some(h.finish()))
    }

    /// The key of an event, from its payload (JSON text).
    pub fn of_event_payload(payload: &str) -> Self {
        meeting_of_payload(payload).map_or(Self(None), |id| Self::of_meeting(&id))
    }

    /// The instance, of `instances`, this key goes to (0 for no meeting).
    pub fn instance(self, instances: usize) -> usize {
        match self.0 {
            Some(hash) if instances > 1 => (hash % instances as u64) as usize,
            _ => 0,
        }
    }
}

/// The ids an event payload (or its `object`) may carry; only these are read.
#[derive(Deserialize, Default)]
struct Ids {
    object: Option<Box<Ids>>,
    meeting_uuid: Option<serde_json::Value>,
    webinar_uuid: Option<serde_json::Value>,
    session_id: Option<serde_json::Value>,
    engagement_id: Option<serde_json::Value>,
    call_id: Option<serde_json::Value>,
    uuid: Option<serde_json::Value>,
    id: Option<serde_json::Value>,
}

fn text(v: &Option<serde_json::Value>) -> Option<String> {
    match v.as_ref()? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The meeting an event payload names, per the order in the module docs.
pub fn meeting_of_payload(payload: &str) -> Option<String> {
    let p: Ids = serde_json::from_str(payload).ok()?;
    let product = |ids: &Ids| {
        [
            &ids.meeting_uuid,
            &ids.webinar_uuid,
            &ids.session_id,
            &ids.engagement_id,
            &ids.call_id,
        ]
        .into_iter()
        .find_map(text)
    };
    product(&p).or_else(|| {
        let object = p.object.as_ref()?;
        text(&object.uuid)
            .or_else(|| product(object))
            .or_else(|| text(&object.id))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meeting_is_found_where_zoom_puts_it() {
        let cases = [
            (r#"{"meeting_uuid":"m1","rtms_stream_id":"s"}"#, Some("m1")),
            (r#"{"webinar_uuid":"w1"}"#, Some("w1")),
            (r#"{"session_id":"v1"}"#, Some("v1")),
            (r#"{"engagement_id":"e1"}"#, Some("e1")),
            (r#"{"call_id":"c1"}"#, Some("c1")),
            (
                r#"{"object":{"uuid":"m2","id":123,"participant":{"user_id":"u"}}}"#,
                Some("m2"),
            ),
            (r#"{"object":{"meeting_uuid":"m3","id":"x"}}"#, Some("m3")),
            (r#"{"object":{"id":987}}"#, Some("987")),
            (r#"{"account_id":"a","object":{}}"#, None),
            (r#"{}"#, None),
            ("not json", None),
        ];
        for (payload, want) in cases {
            assert_eq!(meeting_of_payload(payload).as_deref(), want, "{payload}");
        }
    }

    #[test]
    fn events_and_streams_of_one_meeting_share_an_instance() {
        let event = ShardKey::of_event_payload(r#"{"object":{"uuid":"abc=="}}"#);
        let rtms = ShardKey::of_event_payload(r#"{"meeting_uuid":"abc=="}"#);
        let stream = ShardKey::of_meeting("abc==");
        assert_eq!(event, stream);
        assert_eq!(rtms, stream);
        // Stable across runs: FNV-1a of the bytes.
        assert_eq!(
            ShardKey::of_meeting("a"),
            ShardKey(Some(0xaf63dc4c8601ec8c))
        );
        assert_eq!(ShardKey::of_event_payload("{}").instance(4), 0);
        let spread: std::collections::BTreeSet<usize> = (0..64)
            .map(|i| ShardKey::of_meeting(&format!("meeting-{i}")).instance(4))
            .collect();
        assert_eq!(spread.len(), 4);
    }
}
