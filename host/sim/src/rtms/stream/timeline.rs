//! What a stream sends and when: the number of items of each kind, the frame (tick) each
//! belongs to, who speaks during a frame, and the clock.
//!
//! The clock is a list of segments: each time media (re)starts, a segment records which
//! frame was due at which instant and wall-clock time. Real-time streams put every
//! segment on one frame grid shared by all streams; fast streams have one segment that
//! starts at the stream's creation. A frame's timestamp comes from the segment it falls
//! in, so items sent again after a resume carry the timestamps they had the first time.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::state::Core;
use crate::rtms::source::AudioInput;
use crate::rtms::{DataOpt, End, ExtraMedia, MediaKind, Pace, SimParticipant};
use crate::util::now_ms;

/// Frames per active-speaker turn when there are no transcripts.
const DEFAULT_SPEAKER_TICKS: u32 = 100;
/// The origin of the real-time frame grid shared by every stream.
static CLOCK_GRID: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// Everything about a stream that does not change after it was added.
pub(super) struct Timeline {
    pub meeting_uuid: String,
    pub stream_id: String,
    pub session_id: String,
    pub participants: Vec<SimParticipant>,
    pub frames: u32,
    pub pace: Pace,
    pub input: AudioInput,
    pub data_opt: DataOpt,
    pub transcript_every: u32,
    pub confirm_audio: Option<Value>,
    pub resend_on_resume: u32,
    pub end: End,
    pub stop_reason: u32,
    pub extra: ExtraMedia,
    pub record: bool,
    pub created_wall_ms: u64,
}

impl Timeline {
    pub(super) fn count(&self, kind: MediaKind, sources: u32) -> u64 {
        let frames = u64::from(self.frames);
        match kind {
            MediaKind::Audio => frames * u64::from(sources),
            MediaKind::Transcript if self.transcript_every > 0 => {
                frames / u64::from(self.transcript_every)
            }
            MediaKind::Transcript => 0,
            MediaKind::Video => self.extra.video.into(),
            MediaKind::Share => self.extra.share.into(),
            MediaKind::Chat => self.extra.chat.into(),
        }
    }

    /// The frame (tick) item `n` of `kind` belongs to.
    pub(super) fn tick_of(&self, kind: MediaKind, n: u64, sources: u32) -> u32 {
        match kind {
            MediaKind::Audio => (n / u64::from(sources.max(1))) as u32,
            MediaKind::Transcript => ((n + 1) * u64::from(self.transcript_every.max(1)) - 1) as u32,
            _ => match self.count(kind, sources) {
                0 => 0,
                c => (n * u64::from(self.frames) / c) as u32,
            },
        }
    }

    /// The participant speaking during `tick`.
    pub(super) fn speaker(&self, tick: u32) -> Option<usize> {
        if self.participants.is_empty() {
            return None;
        }
        let period = if self.transcript_every > 0 {
            self.transcript_every
        } else {
            DEFAULT_SPEAKER_TICKS
        };
        Some((tick / period) as usize % self.participants.len())
    }

    pub(super) fn speaker_user(&self, tick: u32) -> (u32, &str) {
        self.speaker(tick).map_or((0, ""), |i| {
            let p = &self.participants[i];
            (p.user_id, p.user_name.as_str())
        })
    }
}

/// Where the clock restarted: frame `from` was due at `at` / wall clock `wall_ms`.
pub(super) struct Segment {
    pub(super) from: u32,
    pub(super) wall_ms: u64,
    pub(super) at: Instant,
}

impl Core {
    pub(super) fn start_segment(&mut self, tl: &Timeline, now: Instant) {
        if self.segments.is_empty() {
            self.frame_ms = self
                .audio
                .as_ref()
                .map_or(20, |a| u64::from(a.format.send_rate));
        }
        match tl.pace {
            Pace::Fast => {
                if self.segments.is_empty() {
                    self.segments.push(Segment {
                        from: 0,
                        wall_ms: tl.created_wall_ms,
                        at: now,
                    });
                }
            }
            Pace::RealTime => {
                // Frames of every stream fall due on one shared grid, so the timer
                // wakes many sockets per turn instead of one at a time.
                let base = *CLOCK_GRID.get_or_init(Instant::now);
                let frame = self.frame_ms.max(1);
                let since = now.saturating_duration_since(base).as_millis() as u64;
                let at = base + Duration::from_millis(since.div_ceil(frame) * frame);
                let segment = Segment {
                    from: self.high_tick,
                    wall_ms: now_ms() + at.saturating_duration_since(now).as_millis() as u64,
                    at,
                };
                // Nothing was sent since the last restart: its timestamps were unused.
                if self.segments.last().is_some_and(|s| s.from == segment.from) {
                    self.segments.pop();
                }
                self.segments.push(segment);
            }
        }
    }

    /// When frame `tick` is due (real time).
    pub(super) fn due_at(&self, tick: u32) -> Instant {
        match self.segments.last() {
            Some(s) if tick > s.from => {
                s.at + Duration::from_millis(u64::from(tick - s.from) * self.frame_ms)
            }
            Some(s) => s.at,
            None => Instant::now(),
        }
    }

    /// Frame `tick`'s timestamp; stable once assigned, so repeats carry the same one.
    pub(super) fn timestamp(&self, tl: &Timeline, tick: u32) -> u64 {
        match self.segments.iter().rev().find(|s| s.from <= tick) {
            Some(s) => s.wall_ms + u64::from(tick - s.from) * self.frame_ms,
            None => tl.created_wall_ms + u64::from(tick) * self.frame_ms,
        }
    }
}
