//! What a stream sends and when: the number of items of each kind, the frame (tick) each
//! belongs to, who speaks during a frame, and the clock.
//!
//! The clock is a list of segments: a segment records which frame was due at which
//! instant and wall-clock time. The first starts when the stream is registered (media is
//! produced from then on, connected or not); a pause stops the clock and its end starts a
//! new segment. Real-time streams put every segment on one frame grid shared by all
//! streams; fast streams have one segment that starts at the stream's creation (and
//! produce as fast as they are read). A frame's timestamp comes from the segment it falls
//! in, so buffered items replayed late, and items sent again, carry their original
//! timestamps.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::state::Core;
use crate::rtms::notices::Hub;
use crate::rtms::source::AudioInput;
use crate::rtms::{DataOpt, End, ExtraMedia, MediaKind, Pace, Product, SimParticipant};
use crate::util::now_ms;

/// Frames per active-speaker turn when there are no transcripts.
const DEFAULT_SPEAKER_TICKS: u32 = 100;
/// The origin of the real-time frame grid shared by every stream.
static CLOCK_GRID: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// Everything about a stream that does not change after it was added.
pub(super) struct Timeline {
    pub product: Product,
    pub hub: Arc<Hub>,
    /// [`crate::rtms::RtmsSimConfig::interrupt_state_updates`].
    pub state_updates: bool,
    /// [`crate::rtms::RtmsSimConfig::audio_buffer`].
    pub audio_buffer: Duration,
    /// [`crate::rtms::RtmsSimConfig::flush_grace`].
    pub flush_grace: Duration,
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
    /// [`crate::rtms::StreamSpec::grid_offset_ms`].
    pub grid_offset_ms: u64,
    pub created_wall_ms: u64,
    /// Whose camera is on, and when (resolved: every participant's, always, when the
    /// spec did not say).
    pub cameras: Vec<crate::rtms::CameraOn>,
    /// Cameras turning on or off after frame 0, by frame: `(frame, on, user_id)`.
    pub camera_toggles: Vec<(u32, bool, u32)>,
}

/// The first segment of a stream registered `now`.
pub(super) fn first_segment(
    pace: Pace,
    created_wall_ms: u64,
    grid_offset_ms: u64,
    now: Instant,
) -> Segment {
    match pace {
        Pace::Fast => Segment {
            from: 0,
            wall_ms: created_wall_ms,
            at: now,
        },
        Pace::RealTime => grid_segment(0, 20, grid_offset_ms, now),
    }
}

/// A real-time segment starting at frame `from` on the next grid point after `now`
/// (the grid moved by `offset` ms).
fn grid_segment(from: u32, frame_ms: u64, offset: u64, now: Instant) -> Segment {
    // Frames of every stream fall due on one shared grid (each stream at its offset),
    // so the timer wakes many sockets per turn instead of one at a time.
    let frame = frame_ms.max(1);
    let base = *CLOCK_GRID.get_or_init(Instant::now) + Duration::from_millis(offset % frame);
    let since = now.saturating_duration_since(base).as_millis() as u64;
    let at = base + Duration::from_millis(since.div_ceil(frame) * frame);
    Segment {
        from,
        wall_ms: now_ms() + at.saturating_duration_since(now).as_millis() as u64,
        at,
    }
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
    /// A pause starts: frames not produced by `now` wait for the pause to end.
    pub(super) fn pause_clock(&mut self, tl: &Timeline, now: Instant) {
        self.pause_tick = match tl.pace {
            Pace::Fast => 0,
            Pace::RealTime => self.first_due_after(now),
        };
    }

    /// A pause ended: the clock goes on from the first frame it held back.
    pub(super) fn resume_clock(&mut self, tl: &Timeline, now: Instant) {
        if tl.pace == Pace::RealTime {
            let segment = grid_segment(self.pause_tick, self.frame_ms, tl.grid_offset_ms, now);
            if self.segments.last().is_some_and(|s| s.from == segment.from) {
                self.segments.pop();
            }
            self.segments.push(segment);
        }
    }

    /// The first frame due after `now` (real time).
    pub(super) fn first_due_after(&self, now: Instant) -> u32 {
        match self.segments.last() {
            Some(s) if now >= s.at => {
                let elapsed = now.duration_since(s.at).as_millis() as u64;
                s.from + (elapsed / self.frame_ms.max(1)) as u32 + 1
            }
            Some(s) => s.from,
            None => 0,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grid_offset_moves_a_streams_frames_within_the_frame_period() {
        let now = Instant::now();
        let base = grid_segment(0, 20, 0, now).at;
        for offset in [0u64, 1, 7, 19, 20, 27] {
            let at = grid_segment(0, 20, offset, now).at;
            // Due on the next point of the moved grid (to the millisecond): within one
            // frame of `now`, and `offset mod 20` ms after a point of the shared grid.
            assert!(
                at + Duration::from_millis(1) >= now && at < now + Duration::from_millis(20),
                "offset {offset}"
            );
            let apart = if at >= base {
                at.duration_since(base)
            } else {
                Duration::from_millis(20) - base.duration_since(at)
            };
            assert_eq!(
                apart.as_millis() as u64 % 20,
                offset % 20,
                "offset {offset}"
            );
        }
    }
}
