//! World 0.1.0 served from the current world: deliveries are made in the current WIT
//! types (converted once per input by the router) and converted here, per call, for a
//! component built for 0.1.0. What 0.1.0 lacks is left out:
//!
//! * `event.id`, chat `message-id` and `details` are not given;
//! * a Zoom Phone stream (`phone`, new in 0.2.0) is given as `contact-center`, the 0.1.0
//!   kind closest to it (a voice engagement identified by its own id);
//! * `stream-control` is not in the 0.1.0 world, so such a component cannot ask for it.
//!
//! Records are borrowed from the delivery and copied into 0.1.0's types (frame payloads
//! included): the cost of the compatibility path, paid only by 0.1.0 components.

use crate::bindings::types as wit;
use crate::bindings::v0_1::zoomhost::plugin0_1_0::types as old;

/// A 0.1.0 log level in the current world's type.
pub(crate) fn log_level(level: old::LogLevel) -> wit::LogLevel {
    match level {
        old::LogLevel::Trace => wit::LogLevel::Trace,
        old::LogLevel::Debug => wit::LogLevel::Debug,
        old::LogLevel::Info => wit::LogLevel::Info,
        old::LogLevel::Warn => wit::LogLevel::Warn,
        old::LogLevel::Error => wit::LogLevel::Error,
    }
}

fn media_kind_from_old(k: old::MediaKind) -> wit::MediaKind {
    match k {
        old::MediaKind::Audio => wit::MediaKind::Audio,
        old::MediaKind::Transcript => wit::MediaKind::Transcript,
        old::MediaKind::Video => wit::MediaKind::Video,
        old::MediaKind::Share => wit::MediaKind::Share,
        old::MediaKind::Chat => wit::MediaKind::Chat,
    }
}

fn media_kind(k: wit::MediaKind) -> old::MediaKind {
    match k {
        wit::MediaKind::Audio => old::MediaKind::Audio,
        wit::MediaKind::Transcript => old::MediaKind::Transcript,
        wit::MediaKind::Video => old::MediaKind::Video,
        wit::MediaKind::Share => old::MediaKind::Share,
        wit::MediaKind::Chat => old::MediaKind::Chat,
    }
}

/// A 0.1.0 component's metadata in the current world's type (the record is unchanged).
pub(crate) fn metadata(m: old::Metadata) -> wit::Metadata {
    wit::Metadata {
        name: m.name,
        version: m.version,
        events: m.events,
        media: m.media.into_iter().map(media_kind_from_old).collect(),
        wanted_hosts: m.wanted_hosts,
        config_keys: m.config_keys,
    }
}

/// An event without its `id`.
pub(crate) fn event(e: &wit::Event) -> old::Event {
    old::Event {
        name: e.name.clone(),
        timestamp: e.timestamp,
        payload: e.payload.clone(),
        source: match e.source {
            wit::EventSource::Websocket => old::EventSource::Websocket,
            wit::EventSource::Webhook => old::EventSource::Webhook,
            wit::EventSource::Replay => old::EventSource::Replay,
            wit::EventSource::Simulator => old::EventSource::Simulator,
        },
    }
}

/// The session kind 0.1.0 knows: `phone` becomes `contact-center`.
pub(crate) fn session_kind(k: wit::SessionKind) -> old::SessionKind {
    match k {
        wit::SessionKind::Meeting => old::SessionKind::Meeting,
        wit::SessionKind::Webinar => old::SessionKind::Webinar,
        wit::SessionKind::VideoSdk => old::SessionKind::VideoSdk,
        wit::SessionKind::ContactCenter | wit::SessionKind::Phone => {
            old::SessionKind::ContactCenter
        }
    }
}

/// Stream identity, with the session kind 0.1.0 knows.
pub(crate) fn stream_info(i: &wit::StreamInfo) -> old::StreamInfo {
    old::StreamInfo {
        stream_id: i.stream_id.clone(),
        meeting_id: i.meeting_id.clone(),
        kind: session_kind(i.kind),
        media: i.media.iter().copied().map(media_kind).collect(),
        audio: old::AudioFormat {
            codec: match i.audio.codec {
                wit::AudioCodec::L16 => old::AudioCodec::L16,
                wit::AudioCodec::G711 => old::AudioCodec::G711,
                wit::AudioCodec::G722 => old::AudioCodec::G722,
                wit::AudioCodec::Opus => old::AudioCodec::Opus,
            },
            sample_rate: i.audio.sample_rate,
            channels: i.audio.channels,
            frame_ms: i.audio.frame_ms,
        },
    }
}

/// An audio frame (unchanged record; the payload is copied).
pub(crate) fn audio_frame(f: &wit::AudioFrame) -> old::AudioFrame {
    old::AudioFrame {
        user_id: f.user_id,
        user_name: f.user_name.clone(),
        timestamp: f.timestamp,
        data: f.data.clone(),
    }
}

/// A video or share frame (unchanged record; the payload is copied).
pub(crate) fn video_frame(f: &wit::VideoFrame) -> old::VideoFrame {
    old::VideoFrame {
        user_id: f.user_id,
        user_name: f.user_name.clone(),
        timestamp: f.timestamp,
        data: f.data.clone(),
    }
}

/// A transcript segment (unchanged record).
pub(crate) fn transcript(s: &wit::TranscriptSegment) -> old::TranscriptSegment {
    old::TranscriptSegment {
        user_id: s.user_id,
        user_name: s.user_name.clone(),
        timestamp: s.timestamp,
        end_timestamp: s.end_timestamp,
        text: s.text.clone(),
        language: s.language.clone(),
    }
}

/// A chat message without `message-id` and `details`.
pub(crate) fn chat(m: &wit::ChatMessage) -> old::ChatMessage {
    old::ChatMessage {
        user_id: m.user_id,
        user_name: m.user_name.clone(),
        timestamp: m.timestamp,
        text: m.text.clone(),
    }
}

/// A participant (unchanged record).
pub(crate) fn participant(p: &wit::Participant) -> old::Participant {
    old::Participant {
        user_id: p.user_id,
        user_name: p.user_name.clone(),
    }
}

/// A stream state (unchanged enum).
pub(crate) fn stream_state(s: wit::StreamState) -> old::StreamState {
    match s {
        wit::StreamState::Inactive => old::StreamState::Inactive,
        wit::StreamState::Active => old::StreamState::Active,
        wit::StreamState::Interrupted => old::StreamState::Interrupted,
        wit::StreamState::Terminating => old::StreamState::Terminating,
        wit::StreamState::Terminated => old::StreamState::Terminated,
        wit::StreamState::Paused => old::StreamState::Paused,
        wit::StreamState::Resumed => old::StreamState::Resumed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phone_stream_is_contact_center_for_0_1_and_new_fields_are_left_out() {
        assert_eq!(
            session_kind(wit::SessionKind::Phone),
            old::SessionKind::ContactCenter
        );
        let e = event(&wit::Event {
            id: "abc".into(),
            name: "meeting.started".into(),
            timestamp: 5,
            payload: "{}".into(),
            source: wit::EventSource::Webhook,
        });
        assert_eq!(e.name, "meeting.started");
        assert_eq!(e.source, old::EventSource::Webhook);
        let m = chat(&wit::ChatMessage {
            user_id: 1,
            user_name: "a".into(),
            timestamp: 2,
            text: "hi".into(),
            message_id: Some("m".into()),
            details: Some("{}".into()),
        });
        assert_eq!(m.text, "hi");
    }
}
