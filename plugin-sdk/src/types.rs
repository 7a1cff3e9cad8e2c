//! The WIT types, re-exported under friendly names, with a few conveniences.

use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;

pub use crate::bindings::zoomhost::plugin::types::{
    AudioCodec, AudioFormat, AudioFrame, ChatMessage, Event, EventSource, LogLevel, MediaKind,
    Metadata, Participant, SessionKind, StreamInfo, StreamState, TranscriptSegment, VideoFrame,
};

impl Metadata {
    /// Metadata with a name and version and no subscriptions; add them with the
    /// builder methods below.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Metadata {
            name: name.into(),
            version: version.into(),
            events: Vec::new(),
            media: Vec::new(),
            wanted_hosts: Vec::new(),
            config_keys: Vec::new(),
        }
    }

    /// Sets the event-name patterns: exact (`recording.completed`), prefix (`meeting.*`)
    /// or `*`.
    pub fn events<S: Into<String>>(mut self, patterns: impl IntoIterator<Item = S>) -> Self {
        self.events = patterns.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the media kinds whose streams open a [`MediaSession`](crate::MediaSession).
    pub fn media(mut self, kinds: impl IntoIterator<Item = MediaKind>) -> Self {
        self.media = kinds.into_iter().collect();
        self
    }

    /// Sets the outbound hosts the plugin would like (informational; the operator's
    /// config grants them).
    pub fn wanted_hosts<S: Into<String>>(mut self, hosts: impl IntoIterator<Item = S>) -> Self {
        self.wanted_hosts = hosts.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the config keys the plugin reads (informational).
    pub fn config_keys<S: Into<String>>(mut self, keys: impl IntoIterator<Item = S>) -> Self {
        self.config_keys = keys.into_iter().map(Into::into).collect();
        self
    }
}

impl Event {
    /// The payload parsed as JSON.
    pub fn payload_json(&self) -> Result<serde_json::Value, String> {
        self.payload_as()
    }

    /// The payload deserialized into `T`.
    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_str(&self.payload)
            .map_err(|err| format!("{}: payload is not the expected JSON: {err}", self.name))
    }
}

/// Gives a WIT enum its WIT case names: `as_str`, [`fmt::Display`] and, for those
/// listed with `parse`, [`FromStr`].
macro_rules! wit_names {
    ($ty:ident { $($case:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every case, in WIT order.
            pub const ALL: &'static [$ty] = &[$($ty::$case),+];

            /// The case's name as written in the WIT (`kebab-case`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$case => $name),+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = ParseKindError;

            /// Parses the WIT case name, ignoring ASCII case and surrounding spaces.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let s = s.trim();
                $ty::ALL
                    .iter()
                    .copied()
                    .find(|case| case.as_str().eq_ignore_ascii_case(s))
                    .ok_or_else(|| ParseKindError {
                        what: stringify!($ty),
                        input: s.to_string(),
                    })
            }
        }
    };
}

wit_names!(MediaKind {
    Audio => "audio",
    Transcript => "transcript",
    Video => "video",
    Share => "share",
    Chat => "chat",
});

wit_names!(EventSource {
    Websocket => "websocket",
    Webhook => "webhook",
    Replay => "replay",
    Simulator => "simulator",
});

wit_names!(AudioCodec {
    L16 => "l16",
    G711 => "g711",
    G722 => "g722",
    Opus => "opus",
});

wit_names!(SessionKind {
    Meeting => "meeting",
    Webinar => "webinar",
    VideoSdk => "video-sdk",
    ContactCenter => "contact-center",
    Phone => "phone",
});

wit_names!(StreamState {
    Inactive => "inactive",
    Active => "active",
    Interrupted => "interrupted",
    Terminating => "terminating",
    Terminated => "terminated",
    Paused => "paused",
    Resumed => "resumed",
});

wit_names!(LogLevel {
    Trace => "trace",
    Debug => "debug",
    Info => "info",
    Warn => "warn",
    Error => "error",
});

/// A string that names no case of a WIT enum (see the enums' [`FromStr`] impls).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseKindError {
    what: &'static str,
    input: String,
}

impl fmt::Display for ParseKindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is not a {}", self.input, self.what)
    }
}

impl std::error::Error for ParseKindError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_names_round_trip() {
        for kind in MediaKind::ALL {
            assert_eq!(kind.as_str().parse::<MediaKind>(), Ok(*kind));
        }
        assert_eq!(
            " Video-SDK ".parse::<SessionKind>(),
            Ok(SessionKind::VideoSdk)
        );
        assert_eq!(StreamState::Paused.to_string(), "paused");
        let err = "smell".parse::<MediaKind>().unwrap_err();
        assert_eq!(err.to_string(), "`smell` is not a MediaKind");
    }

    #[test]
    fn payload_json() {
        let event = Event {
            id: "e1".into(),
            name: "meeting.started".into(),
            timestamp: 1,
            payload: r#"{"object":{"topic":"standup"}}"#.into(),
            source: EventSource::Replay,
        };
        let payload = event.payload_json().unwrap();
        assert_eq!(payload["object"]["topic"], "standup");

        let bad = Event {
            payload: "{".into(),
            ..event
        };
        assert!(bad
            .payload_json()
            .unwrap_err()
            .starts_with("meeting.started: "));
    }

    #[test]
    fn metadata_builder() {
        let meta = Metadata::new("x", "1")
            .events(["*"])
            .media([MediaKind::Audio]);
        assert_eq!(meta.events, vec!["*".to_string()]);
        assert_eq!(meta.media, vec![MediaKind::Audio]);
        assert!(meta.wanted_hosts.is_empty());
    }
}
