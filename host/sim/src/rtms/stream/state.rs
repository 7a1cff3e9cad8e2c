//! The mutable state of a stream, behind one lock: its phase, connections and which of
//! them carries signaling and each media kind, the per-kind cursors, readiness, pauses,
//! subscriptions, pending faults and counters, and the state derived from them (whether
//! media plays, since when the stream is interrupted).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;
use tokio::time::Instant;

use super::timeline::{Segment, Timeline};
use super::{Cmd, ConnEntry, Phase, SimStreamStats};
use crate::rtms::source::AudioPlan;
use crate::rtms::wire::status;
use crate::rtms::{Fault, MediaKind};

pub(super) struct Core {
    pub(super) phase: Phase,
    pub(super) audio: Option<Arc<AudioPlan>>,
    /// Effective params of the non-audio kinds, fixed at their first handshake.
    pub(super) other_params: [Option<Value>; 5],
    pub(super) language: String,
    pub(super) conns: HashMap<u64, ConnEntry>,
    pub(super) signaling: Option<u64>,
    pub(super) owners: [Option<u64>; 5],
    /// Kinds a client asked for that have items.
    pub(super) wanted: [bool; 5],
    pub(super) cursors: [u64; 5],
    pub(super) resend: HashMap<u64, VecDeque<u64>>,
    /// One past the highest frame any item was sent for.
    pub(super) high_tick: u32,
    pub(super) ready: bool,
    pub(super) ever_ready: bool,
    pub(super) paused: bool,
    pub(super) pause_until: Option<Instant>,
    pub(super) clock_running: bool,
    pub(super) frame_ms: u64,
    pub(super) segments: Vec<Segment>,
    pub(super) subscriptions: BTreeSet<u32>,
    pub(super) first_packet: Option<u64>,
    pub(super) last_speaker: Option<usize>,
    pub(super) faults: VecDeque<(u32, Fault)>,
    pub(super) reject_next: VecDeque<u32>,
    pub(super) stop_request: Option<u32>,
    pub(super) interrupted_since: Option<Instant>,
    pub(super) stats: SimStreamStats,
}

impl Core {
    /// Refusals that do not depend on the message: a finished stream, an injected fault.
    pub(super) fn admission(&mut self) -> Result<(), (u32, String)> {
        if matches!(self.phase, Phase::Stopping | Phase::Done(_)) {
            return Err((status::STREAM_ENDED, "the stream has ended".to_string()));
        }
        if let Some(code) = self.reject_next.pop_front() {
            return Err((code, "rejected by an injected fault".to_string()));
        }
        Ok(())
    }

    /// Takes away what connection `id` carries (signaling, media kinds) without
    /// forgetting the connection; returns the media bits it carried.
    pub(super) fn detach(&mut self, id: u64) -> u64 {
        if self.signaling == Some(id) {
            self.signaling = None;
            self.ready = false;
        }
        let mut lost = 0;
        for (k, owner) in self.owners.iter_mut().enumerate() {
            if *owner == Some(id) {
                *owner = None;
                lost |= MediaKind::ALL[k].bit();
            }
        }
        self.resend.remove(&id);
        lost
    }

    pub(super) fn send_to(&self, id: u64, cmd: Cmd) {
        if let Some(conn) = self.conns.get(&id) {
            let _ = conn.tx.send(cmd);
        }
    }

    pub(super) fn send_signaling(&self, msg: String) {
        if let Some(id) = self.signaling {
            self.send_to(id, Cmd::Send(msg));
        }
    }

    pub(super) fn sources(&self) -> u32 {
        self.audio.as_ref().map_or(0, |a| a.sources())
    }

    pub(super) fn complete(&self, tl: &Timeline, kind: MediaKind) -> bool {
        self.cursors[kind.index()] >= tl.count(kind, self.sources())
    }

    /// Every kind the client asked for was sent in full (and it asked for one).
    pub(super) fn all_sent(&self, tl: &Timeline) -> bool {
        self.wanted.iter().any(|w| *w)
            && MediaKind::ALL
                .into_iter()
                .all(|k| !self.wanted[k.index()] || self.complete(tl, k))
    }

    /// Every requested kind with items left has a socket.
    pub(super) fn media_connected(&self, tl: &Timeline) -> bool {
        MediaKind::ALL.into_iter().all(|k| {
            !self.wanted[k.index()] || self.complete(tl, k) || self.owners[k.index()].is_some()
        })
    }

    pub(super) fn playing(&self, tl: &Timeline) -> bool {
        self.phase == Phase::Live
            && !self.paused
            && self.ready
            && self.signaling.is_some()
            && self.wanted.iter().any(|w| *w)
            && self.media_connected(tl)
    }

    /// Recomputes the derived state after any change: the clock, the interruption.
    pub(super) fn update(&mut self, tl: &Timeline, now: Instant) {
        let playing = self.playing(tl);
        if playing && !self.clock_running {
            self.start_segment(tl, now);
        }
        self.clock_running = playing;
        let connected = self.signaling.is_some() && self.ready && self.media_connected(tl);
        if self.phase == Phase::Live && !connected {
            self.interrupted_since.get_or_insert(now);
        } else {
            self.interrupted_since = None;
        }
    }
}
