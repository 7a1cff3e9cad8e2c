//! Media types and their parameters.
//!
//! Each media type has a bit in the media handshake's `media_type` ([`bit`]), a key
//! ([`key`]) naming its URL in the signaling reply's `media_server.server_urls` and its
//! object in `media_params`, and a data message type (`MEDIA_DATA_*`, 14 to 18, in
//! [`crate::rtms::msg`]). One media socket may carry several types (their bits ORed, or
//! [`bit::ALL`] with the `all` URL).
//!
//! `media_params` holds one object per requested type. Audio:
//! `{content_type, codec, sample_rate, channel, data_opt, send_rate}` with the wire codes
//! below (`sample_rate` is a code, [`sample_rate`]; `channel` 1 or 2; `send_rate` the
//! milliseconds per message, a multiple of 20). Video and screen share:
//! `{content_type, codec, resolution, data_opt?, fps}`. Transcript:
//! `{content_type, src_language?, enable_lid?}` (`src_language` one of Zoom's language
//! numbers, [`crate::rtms::language`]; `enable_lid` language detection, default true).
//! Chat: `{content_type}`. The media handshake reply carries the effective values, which
//! may differ from what was asked.

/// `media_type` bits.
pub mod bit {
    /// Audio.
    pub const AUDIO: u32 = 1;
    /// Video.
    pub const VIDEO: u32 = 2;
    /// Screen share.
    pub const DESKSHARE: u32 = 4;
    /// Transcript.
    pub const TRANSCRIPT: u32 = 8;
    /// Chat.
    pub const CHAT: u32 = 16;
    /// Every media type on one socket.
    pub const ALL: u32 = 32;
}

/// Keys of `media_server.server_urls` and of `media_params`.
pub mod key {
    /// Audio.
    pub const AUDIO: &str = "audio";
    /// Video.
    pub const VIDEO: &str = "video";
    /// Screen share.
    pub const DESKSHARE: &str = "deskshare";
    /// Transcript.
    pub const TRANSCRIPT: &str = "transcript";
    /// Chat.
    pub const CHAT: &str = "chat";
    /// The URL of a socket for every media type.
    pub const ALL: &str = "all";
}

/// `content_type` of a media params object.
pub mod content_type {
    /// RTP (audio, video).
    pub const RTP: u32 = 1;
    /// Raw audio.
    pub const RAW_AUDIO: u32 = 2;
    /// Raw video (video and screen share).
    pub const RAW_VIDEO: u32 = 3;
    /// Text (transcript and chat).
    pub const TEXT: u32 = 5;
}

/// `codec` of a media params object.
pub mod codec {
    /// 16-bit linear PCM, little-endian (audio).
    pub const L16: u32 = 1;
    /// G.711 (audio).
    pub const G711: u32 = 2;
    /// G.722 (audio).
    pub const G722: u32 = 3;
    /// Opus (audio).
    pub const OPUS: u32 = 4;
    /// JPEG (video at 5 fps or less, screen share at 1 fps or less).
    pub const JPG: u32 = 5;
    /// PNG (same rates as JPEG).
    pub const PNG: u32 = 6;
    /// H.264 (video, screen share).
    pub const H264: u32 = 7;
}

/// `data_opt` of a media params object.
pub mod data_opt {
    /// Audio: one mixed stream (`user_id` 0).
    pub const AUDIO_MIXED: u32 = 1;
    /// Audio: one stream per speaker.
    pub const AUDIO_PER_SPEAKER: u32 = 2;
    /// Video: the active speaker's stream.
    pub const VIDEO_ACTIVE_SPEAKER: u32 = 3;
    /// Video: one participant's stream, chosen with `VIDEO_SUBSCRIPTION_REQ` (28); no
    /// video flows before a subscription.
    pub const VIDEO_SINGLE_INDIVIDUAL: u32 = 4;
}

/// `resolution` of a video or screen-share params object.
pub mod resolution {
    /// SD (480p or 360p).
    pub const SD: u32 = 1;
    /// HD (720p; the video default).
    pub const HD: u32 = 2;
    /// Full HD (1080p; the screen-share default).
    pub const FHD: u32 = 3;
    /// QHD.
    pub const QHD: u32 = 4;
}

/// The audio `sample_rate` codes.
pub mod sample_rate {
    /// 8 kHz.
    pub const KHZ_8: u32 = 0;
    /// 16 kHz.
    pub const KHZ_16: u32 = 1;
    /// 32 kHz.
    pub const KHZ_32: u32 = 2;
    /// 48 kHz.
    pub const KHZ_48: u32 = 3;

    /// The rate in Hz of each code (the code is the index).
    pub const HZ: [u32; 4] = [8_000, 16_000, 32_000, 48_000];

    /// The code of a rate in Hz (`None` for rates RTMS does not deliver).
    pub fn code(hz: u32) -> Option<u32> {
        HZ.iter().position(|&r| r == hz).map(|i| i as u32)
    }

    /// The rate in Hz of a code (`None` for unknown codes).
    pub fn hz(code: u64) -> Option<u32> {
        usize::try_from(code).ok().and_then(|i| HZ.get(i)).copied()
    }

    /// Whether `hz` is a rate RTMS can deliver.
    pub fn is_valid(hz: u32) -> bool {
        code(hz).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_rate_codes_round_trip() {
        for (code, hz) in sample_rate::HZ.iter().enumerate() {
            assert_eq!(sample_rate::code(*hz), Some(code as u32));
            assert_eq!(sample_rate::hz(code as u64), Some(*hz));
        }
        assert_eq!(sample_rate::code(44_100), None);
        assert_eq!(sample_rate::hz(4), None);
        assert_eq!(sample_rate::hz(u64::MAX), None);
        assert!(sample_rate::is_valid(48_000));
        assert!(!sample_rate::is_valid(22_050));
        assert_eq!(sample_rate::hz(sample_rate::KHZ_16.into()), Some(16_000));
    }

    #[test]
    fn bits_are_distinct() {
        let bits = [
            bit::AUDIO,
            bit::VIDEO,
            bit::DESKSHARE,
            bit::TRANSCRIPT,
            bit::CHAT,
            bit::ALL,
        ];
        assert_eq!(bits.iter().fold(0, |a, b| a | b), 63);
    }
}
