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
//!
//! The state is small (one entry per kind and speaker) and can be saved and restored
//! ([`Dedupe::snapshot`], [`Dedupe::restore`]), so a stream resumed by another node (a
//! cluster's next owner) drops Zoom's replay of what this one already delivered. The
//! hashes are FNV-1a, stable across builds and machines.

use std::collections::HashMap;
use std::sync::Mutex;

use zoomhost_protocol::fnv::fnv1a;
use zoomhost_types::MediaKind;

/// The newest delivered frame of one media kind and speaker: what a saved stream
/// remembers of its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    /// The media kind ([`MediaKind`] as a number: audio 0, transcript 1, video 2,
    /// share 3, chat 4).
    pub kind: u8,
    /// The speaker: the user id, or a channel's hash with the top bit set.
    pub speaker: u64,
    /// The newest timestamp delivered.
    pub ts: u64,
    /// The digest of that frame's content (text kinds; 0 otherwise).
    pub digest: u64,
}

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
            Speaker::Channel(channel) => fnv1a(channel.as_bytes()) | (1 << 63),
        }
    }
}

/// A (kind, speaker) key.
type Key = (u8, u64);
/// The newest delivered (timestamp, content digest) of a key.
type Entry = (u64, u64);

/// The newest (timestamp, content digest) per (kind, speaker).
#[derive(Default)]
pub(crate) struct Dedupe {
    last: Mutex<Table>,
}

/// The entries: the key of the last frame accepted is kept beside the lock (a speaker's
/// frames come in runs, so most frames touch neither the map nor a hash), the others in
/// the map.
#[derive(Default)]
struct Table {
    hot_key: Option<Key>,
    /// The entry of `hot_key` (not in `cold`).
    hot: Entry,
    cold: HashMap<Key, Entry>,
}

impl Table {
    fn get(&self, key: Key) -> Option<Entry> {
        if self.hot_key == Some(key) {
            return Some(self.hot);
        }
        self.cold.get(&key).copied()
    }

    /// Records `entry` for `key`, which becomes the hot one.
    fn set(&mut self, key: Key, entry: Entry) {
        if self.hot_key != Some(key) {
            if let Some(old) = self.hot_key.replace(key) {
                self.cold.insert(old, self.hot);
            }
            self.cold.remove(&key);
        }
        self.hot = entry;
    }

    fn entries(&self) -> impl Iterator<Item = (Key, Entry)> + '_ {
        let hot = self.hot_key.map(|k| (k, self.hot));
        self.cold.iter().map(|(k, e)| (*k, *e)).chain(hot)
    }
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
        let digest = if text { fnv1a(data) } else { 0 };
        let key = (kind as u8, speaker.key());
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match last.get(key) {
            Some((last_ts, _)) if ts < last_ts => false,
            Some((last_ts, last_digest)) if ts == last_ts && (!text || digest == last_digest) => {
                false
            }
            _ => {
                last.set(key, (ts, digest));
                true
            }
        }
    }

    /// A dedupe that already delivered up to `progress` (a resumed stream).
    pub(crate) fn restored(progress: &[Progress]) -> Self {
        let cold = progress
            .iter()
            .map(|p| ((p.kind, p.speaker), (p.ts, p.digest)))
            .collect();
        Self {
            last: Mutex::new(Table {
                cold,
                ..Table::default()
            }),
        }
    }

    /// The newest frame delivered per kind and speaker, sorted.
    pub(crate) fn snapshot(&self) -> Vec<Progress> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<Progress> = last
            .entries()
            .map(|((kind, speaker), (ts, digest))| Progress {
                kind,
                speaker,
                ts,
                digest,
            })
            .collect();
        out.sort_by_key(|p| (p.kind, p.speaker));
        out
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
    fn a_restored_snapshot_drops_what_was_delivered_before() {
        let d = Dedupe::default();
        let a = MediaKind::Audio;
        assert!(d.accept(a, Speaker::User(5), Some(100), b"a"));
        assert!(d.accept(a, Speaker::Channel("agent"), Some(90), b"a"));
        assert!(d.accept(MediaKind::Transcript, Speaker::User(5), Some(80), b"hi"));
        let saved = d.snapshot();
        assert_eq!(saved.len(), 3);
        let json = serde_json::to_string(&saved).unwrap();
        let back: Vec<Progress> = serde_json::from_str(&json).unwrap();
        let r = Dedupe::restored(&back);
        assert!(!r.accept(a, Speaker::User(5), Some(100), b"a"));
        assert!(!r.accept(a, Speaker::Channel("agent"), Some(90), b"a"));
        assert!(!r.accept(MediaKind::Transcript, Speaker::User(5), Some(80), b"hi"));
        assert!(r.accept(MediaKind::Transcript, Speaker::User(5), Some(80), b"other"));
        assert!(r.accept(a, Speaker::User(5), Some(120), b"b"));
        assert_eq!(r.snapshot().len(), 3);
    }

    #[test]
    fn speakers_taking_turns_keep_their_own_order() {
        let d = Dedupe::default();
        let a = MediaKind::Audio;
        for ts in [100, 120, 140] {
            for user in [1, 2, 3] {
                assert!(d.accept(a, Speaker::User(user), Some(ts + u64::from(user)), b""));
            }
            for user in [1, 2, 3] {
                assert!(!d.accept(a, Speaker::User(user), Some(ts + u64::from(user)), b""));
                assert!(!d.accept(a, Speaker::User(user), Some(ts - 20), b""));
            }
        }
        let saved = d.snapshot();
        assert_eq!(
            saved.iter().map(|p| (p.speaker, p.ts)).collect::<Vec<_>>(),
            [(1, 141), (2, 142), (3, 143)]
        );
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
