//! The Zoom products that stream over RTMS, and what tells them apart on the wire: the
//! prefix of their lifecycle webhooks and the id field that names the session in those
//! webhooks and (depending on the client) in the handshakes.
//!
//! | product | lifecycle events | id field |
//! |---|---|---|
//! | Meetings | `meeting.rtms_started` / `_stopped` / `_interrupted` | `meeting_uuid` |
//! | Webinars | `webinar.rtms_*` | `webinar_uuid` |
//! | Video SDK | `session.rtms_*` | `session_id` (plus `session_key`) |
//! | Contact Center voice | `contact_center.voice_rtms_*` | `engagement_id` |
//! | Zoom Phone | `phone.rtms_*` (also seen as `phone.call_rtms_*`) | `call_id` |
//!
//! `*_started` adds `rtms_stream_id` and `server_urls` (a comma-separated string: one URL
//! per transport, so entries other than `ws(s)` are legitimate), `*_stopped` adds
//! `stop_reason`, `*_interrupted` carries only the ids. Zoom sends `*_started` again, with
//! the same ids, new `server_urls` and a newer `event_ts`, when the stream moved to
//! another server (failover).

/// A product with RTMS streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Product {
    /// Zoom Meetings.
    Meeting,
    /// Zoom Webinars.
    Webinar,
    /// Video SDK sessions.
    VideoSdk,
    /// Contact Center voice engagements.
    ContactCenter,
    /// Zoom Phone calls.
    Phone,
}

/// Every id field a handshake may carry (the simulator accepts any one of them).
pub const ID_KEYS: [&str; 5] = [
    "meeting_uuid",
    "webinar_uuid",
    "session_id",
    "engagement_id",
    "call_id",
];

/// What happened to a stream, by the suffix of its lifecycle event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// `*.rtms_started`: a new stream, or a failover when the stream is already running.
    Started,
    /// `*.rtms_stopped`.
    Stopped,
    /// `*.rtms_interrupted`: signaling (and media) were lost; re-handshake.
    Interrupted,
}

impl Product {
    /// Every product.
    pub const ALL: [Product; 5] = [
        Product::Meeting,
        Product::Webinar,
        Product::VideoSdk,
        Product::ContactCenter,
        Product::Phone,
    ];

    /// The product's id field in lifecycle payloads and handshakes.
    pub fn id_key(self) -> &'static str {
        match self {
            Product::Meeting => "meeting_uuid",
            Product::Webinar => "webinar_uuid",
            Product::VideoSdk => "session_id",
            Product::ContactCenter => "engagement_id",
            Product::Phone => "call_id",
        }
    }

    /// The lifecycle event name, e.g. `meeting.rtms_started`,
    /// `contact_center.voice_rtms_interrupted`.
    pub fn event_name(self, lifecycle: Lifecycle) -> String {
        let prefix = match self {
            Product::Meeting => "meeting.rtms_",
            Product::Webinar => "webinar.rtms_",
            Product::VideoSdk => "session.rtms_",
            Product::ContactCenter => "contact_center.voice_rtms_",
            Product::Phone => "phone.rtms_",
        };
        let suffix = match lifecycle {
            Lifecycle::Started => "started",
            Lifecycle::Stopped => "stopped",
            Lifecycle::Interrupted => "interrupted",
        };
        format!("{prefix}{suffix}")
    }

    /// The product an event name belongs to, by its prefix (`None` for names of no
    /// product, e.g. `rtms.concurrency_limited`).
    pub fn of_event(name: &str) -> Option<Product> {
        let (prefix, _) = name.split_once('.')?;
        Some(match prefix {
            "meeting" => Product::Meeting,
            "webinar" => Product::Webinar,
            "session" => Product::VideoSdk,
            "contact_center" => Product::ContactCenter,
            "phone" => Product::Phone,
            _ => return None,
        })
    }
}

/// The product and lifecycle step of an RTMS lifecycle event name (`None` for any other
/// event).
pub fn lifecycle(name: &str) -> Option<(Product, Lifecycle)> {
    let product = Product::of_event(name)?;
    let step = if name.ends_with("rtms_started") {
        Lifecycle::Started
    } else if name.ends_with("rtms_stopped") {
        Lifecycle::Stopped
    } else if name.ends_with("rtms_interrupted") {
        Lifecycle::Interrupted
    } else {
        return None;
    };
    Some((product, step))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for product in Product::ALL {
            for step in [
                Lifecycle::Started,
                Lifecycle::Stopped,
                Lifecycle::Interrupted,
            ] {
                assert_eq!(lifecycle(&product.event_name(step)), Some((product, step)));
            }
            assert!(ID_KEYS.contains(&product.id_key()));
        }
        assert_eq!(
            lifecycle("phone.call_rtms_started"),
            Some((Product::Phone, Lifecycle::Started))
        );
        assert_eq!(lifecycle("rtms.concurrency_limited"), None);
        assert_eq!(lifecycle("meeting.started"), None);
        assert_eq!(
            Product::ContactCenter.event_name(Lifecycle::Interrupted),
            "contact_center.voice_rtms_interrupted"
        );
    }
}
