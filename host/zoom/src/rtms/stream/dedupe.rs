//! Exactly once, in order: the newest timestamp delivered per media kind and speaker.
//!
//! After a reconnect Zoom replays the audio it buffered during the outage
//! (`buffer_data`) with the original timestamps, and a server may send again what it
//! sent just before a drop. A frame is delivered only when its timestamp is newer than
//! the last delivered for its kind and speaker: the user, or for Contact Center streams
//! the party's `channel_id` (their audio carries `user_id` 0 for every party, so keying
//! by user would drop one party's frames as "older" than the other's). Text (transcript,
//! chat) with the same timestamp but other content is new: several segments may share a
//! millisecond.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use zoomhost_types::MediaKind;

/// Who a frame is from, for ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Speaker<'a> {
    /// A meeting participant (0: the mixed stream).
    User(u32),
    /// A Contact Center channel.
    Channel(&'a str),
}

impl Speaker<'_> {
    fn key(&self) -> u64 {
        match self {
            Speaker::User(id) => u64::from(*id),
            Speaker::Channel(channel) => {
                let mut h = DefaultHasher::new();
                channel.hash(&mut h);
                h.finish() | (1 << 63)
            }
        }
    }
}

/// The newest (timestamp, content digest) per (kind, speaker).
#[derive(Default)]
pub(super) struct Dedupe {
    last: Mutex<HashMap<(u8, u64), (u64, u64)>>,
}

impl Dedupe {
    /// Whether a frame is new (and remembers it when it is). Frames without a timestamp
    /// are always new.
    pub(super) fn accept(
        &self,
        kind: MediaKind,
        speaker: Speaker<'_>,
        ts: Option<u64>,
        data: &[u8],
    ) -> bool {
        let Some(ts) = ts else { return true };
        let text = matches!(kind, MediaKind::Transcript | MediaKind::Chat);
        let digest = if text {
            let mut hasher = DefaultHasher::new();
            data.hash(&mut hasher);
            hasher.finish()
        } else {
            0
        };
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let key = (kind as u8, speaker.key());
        match last.get(&key) {
            Some(&(last_ts, _)) if ts < last_ts => false,
            Some(&(last_ts, last_digest)) if ts == last_ts && (!text || digest == last_digest) => {
                false
            }
            _ => {
                last.insert(key, (ts, digest));
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_are_dropped_and_new_frames_kept() {
        let d = Dedupe::default();
        let a = MediaKind::Audio;
        assert!(d.accept(a, Speaker::User(0), Some(100), b"a"));
        assert!(d.accept(a, Speaker::User(0), Some(120), b"b"));
        assert!(!d.accept(a, Speaker::User(0), Some(100), b"a"));
        assert!(!d.accept(a, Speaker::User(0), Some(120), b"b"));
        // Audio at the same timestamp is a replay whatever its bytes.
        assert!(!d.accept(a, Speaker::User(0), Some(120), b"c"));
        assert!(d.accept(a, Speaker::User(7), Some(100), b"a"));
        assert!(d.accept(MediaKind::Transcript, Speaker::User(0), Some(100), b"a"));
        assert!(d.accept(MediaKind::Transcript, Speaker::User(0), Some(100), b"b"));
        assert!(!d.accept(MediaKind::Transcript, Speaker::User(0), Some(100), b"b"));
        assert!(d.accept(a, Speaker::User(0), None, b"a"));
    }

    #[test]
    fn contact_center_channels_are_ordered_apart() {
        let d = Dedupe::default();
        let a = MediaKind::Audio;
        assert!(d.accept(a, Speaker::Channel("caller"), Some(200), b"x"));
        // The agent's frame is older than the caller's last, but on its own channel.
        assert!(d.accept(a, Speaker::Channel("agent"), Some(180), b"y"));
        assert!(!d.accept(a, Speaker::Channel("caller"), Some(180), b"z"));
        assert!(d.accept(a, Speaker::User(0), Some(100), b"w"));
    }
}
