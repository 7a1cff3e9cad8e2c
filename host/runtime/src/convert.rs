//! The sources' plain types ([`zoomhost_types`]) into the plugin world's WIT types, once
//! per input at dispatch. Frame payloads move: `Bytes` that own their buffer (as decoded
//! frames do) become the WIT `list<u8>` without a copy.

use zoomhost_types as plain;

use crate::bindings::types as wit;

impl From<plain::EventSource> for wit::EventSource {
    fn from(s: plain::EventSource) -> Self {
        match s {
            plain::EventSource::Websocket => Self::Websocket,
            plain::EventSource::Webhook => Self::Webhook,
            plain::EventSource::Replay => Self::Replay,
            plain::EventSource::Simulator => Self::Simulator,
        }
    }
}

impl From<plain::Event> for wit::Event {
    fn from(e: plain::Event) -> Self {
        Self {
            id: e.id,
            name: e.name,
            timestamp: e.timestamp,
            payload: e.payload,
            source: e.source.into(),
        }
    }
}

impl From<plain::MediaKind> for wit::MediaKind {
    fn from(k: plain::MediaKind) -> Self {
        match k {
            plain::MediaKind::Audio => Self::Audio,
            plain::MediaKind::Transcript => Self::Transcript,
            plain::MediaKind::Video => Self::Video,
            plain::MediaKind::Share => Self::Share,
            plain::MediaKind::Chat => Self::Chat,
        }
    }
}

impl From<wit::MediaKind> for plain::MediaKind {
    fn from(k: wit::MediaKind) -> Self {
        match k {
            wit::MediaKind::Audio => Self::Audio,
            wit::MediaKind::Transcript => Self::Transcript,
            wit::MediaKind::Video => Self::Video,
            wit::MediaKind::Share => Self::Share,
            wit::MediaKind::Chat => Self::Chat,
        }
    }
}

impl From<plain::AudioCodec> for wit::AudioCodec {
    fn from(c: plain::AudioCodec) -> Self {
        match c {
            plain::AudioCodec::L16 => Self::L16,
            plain::AudioCodec::G711 => Self::G711,
            plain::AudioCodec::G722 => Self::G722,
            plain::AudioCodec::Opus => Self::Opus,
        }
    }
}

impl From<plain::SessionKind> for wit::SessionKind {
    fn from(k: plain::SessionKind) -> Self {
        match k {
            plain::SessionKind::Meeting => Self::Meeting,
            plain::SessionKind::Webinar => Self::Webinar,
            plain::SessionKind::VideoSdk => Self::VideoSdk,
            plain::SessionKind::ContactCenter => Self::ContactCenter,
            plain::SessionKind::Phone => Self::Phone,
        }
    }
}

impl From<plain::StreamState> for wit::StreamState {
    fn from(s: plain::StreamState) -> Self {
        match s {
            plain::StreamState::Inactive => Self::Inactive,
            plain::StreamState::Active => Self::Active,
            plain::StreamState::Interrupted => Self::Interrupted,
            plain::StreamState::Terminating => Self::Terminating,
            plain::StreamState::Terminated => Self::Terminated,
            plain::StreamState::Paused => Self::Paused,
            plain::StreamState::Resumed => Self::Resumed,
        }
    }
}

impl From<plain::AudioFormat> for wit::AudioFormat {
    fn from(f: plain::AudioFormat) -> Self {
        Self {
            codec: f.codec.into(),
            sample_rate: f.sample_rate,
            channels: f.channels,
            frame_ms: f.frame_ms,
        }
    }
}

impl From<plain::StreamInfo> for wit::StreamInfo {
    fn from(i: plain::StreamInfo) -> Self {
        Self {
            stream_id: i.stream_id,
            meeting_id: i.meeting_id,
            kind: i.kind.into(),
            media: i.media.into_iter().map(Into::into).collect(),
            audio: i.audio.into(),
        }
    }
}

impl From<plain::AudioFrame> for wit::AudioFrame {
    fn from(f: plain::AudioFrame) -> Self {
        Self {
            user_id: f.user_id,
            user_name: f.user_name,
            timestamp: f.timestamp,
            data: Vec::from(f.data),
        }
    }
}

impl From<plain::VideoFrame> for wit::VideoFrame {
    fn from(f: plain::VideoFrame) -> Self {
        Self {
            user_id: f.user_id,
            user_name: f.user_name,
            timestamp: f.timestamp,
            data: Vec::from(f.data),
        }
    }
}

impl From<plain::TranscriptSegment> for wit::TranscriptSegment {
    fn from(s: plain::TranscriptSegment) -> Self {
        Self {
            user_id: s.user_id,
            user_name: s.user_name,
            timestamp: s.timestamp,
            end_timestamp: s.end_timestamp,
            text: s.text,
            language: s.language,
        }
    }
}

impl From<plain::ChatMessage> for wit::ChatMessage {
    fn from(m: plain::ChatMessage) -> Self {
        Self {
            user_id: m.user_id,
            user_name: m.user_name,
            timestamp: m.timestamp,
            text: m.text,
            message_id: m.message_id,
            details: m.details,
        }
    }
}

impl From<plain::Participant> for wit::Participant {
    fn from(p: plain::Participant) -> Self {
        Self {
            user_id: p.user_id,
            user_name: p.user_name,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owned_frame_buffer_moves_without_a_copy() {
        let data = vec![7u8; 640];
        let at = data.as_ptr();
        let frame = plain::AudioFrame {
            user_id: 1,
            user_name: "a".into(),
            timestamp: 2,
            data: plain::Bytes::from(data),
        };
        let wit: wit::AudioFrame = frame.into();
        assert_eq!(wit.data.as_ptr(), at);
        assert_eq!(wit.data.len(), 640);
    }

    #[test]
    fn media_kinds_round_trip() {
        for k in plain::MediaKind::ALL {
            let back: plain::MediaKind = wit::MediaKind::from(k).into();
            assert_eq!(back, k);
        }
    }
}
