//! The mutable state of a stream, behind one lock: its phase, connections and which of
//! them carries signaling and each media kind, the per-kind cursors, readiness, pauses
//! and holds, subscriptions, pending faults and counters, and the state derived from
//! them (which kinds flow and since when, since when signaling or media is missing), plus
//! Zoom's reactions to a lost socket.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::time::Instant;
use zoomhost_protocol::rtms::product::Lifecycle;
use zoomhost_protocol::rtms::states::{stop_reason, stream_state};

use super::timeline::{Segment, Timeline};
use super::{Cmd, ConnEntry, Phase, Role, SimStreamStats};
use crate::rtms::notices;
use crate::rtms::source::AudioPlan;
use crate::rtms::status;
use crate::rtms::wire;
use crate::rtms::{Fault, MediaKind};
use crate::util::now_ms;

pub(super) struct Core {
    pub(super) phase: Phase,
    pub(super) audio: Option<Arc<AudioPlan>>,
    /// Effective params of the non-audio kinds, fixed at their first handshake.
    pub(super) other_params: [Option<Value>; 5],
    /// The `language` of transcript messages: Zoom's language number, 9 (English) unless
    /// the client's `src_language` named another.
    pub(super) language: Value,
    pub(super) conns: HashMap<u64, ConnEntry>,
    pub(super) signaling: Option<u64>,
    pub(super) owners: [Option<u64>; 5],
    /// Kinds a client asked for that have items.
    pub(super) wanted: [bool; 5],
    pub(super) cursors: [u64; 5],
    pub(super) resend: HashMap<u64, VecDeque<u64>>,
    pub(super) ready: bool,
    pub(super) ever_ready: bool,
    pub(super) paused: bool,
    pub(super) pause_until: Option<Instant>,
    /// While paused: the first frame not produced before the pause.
    pub(super) pause_tick: u32,
    /// Media writes held back until then ([`Fault::HoldMedia`]).
    pub(super) hold_until: Option<Instant>,
    /// Since when each kind flows (a socket carries it and the stream plays); `None`
    /// while it does not.
    pub(super) flow_since: [Option<Instant>; 5],
    /// When audio first flowed (what `buffer_data: false` drops is older).
    pub(super) first_flow: Option<Instant>,
    /// `buffer_data` of the signaling handshake (default true).
    pub(super) buffer_data: bool,
    /// The server generation serving the stream (one more per failover).
    pub(super) generation: u32,
    /// `event_ts` of the last lifecycle notice (or the stream's creation).
    pub(super) last_event_ts: u64,
    pub(super) frame_ms: u64,
    pub(super) segments: Vec<Segment>,
    pub(super) subscriptions: BTreeSet<u32>,
    pub(super) first_packet: Option<u64>,
    pub(super) last_speaker: Option<usize>,
    pub(super) faults: VecDeque<(u32, Fault)>,
    /// Faults that fire once the flush grace is over (media is held meanwhile).
    pub(super) deferred: VecDeque<(Instant, Fault)>,
    /// A [`Fault::MissKeepAlives`] is playing out (until a socket is lost).
    pub(super) missing_keepalives: bool,
    pub(super) reject_next: VecDeque<u32>,
    pub(super) stop_request: Option<u32>,
    /// Whether the stop sequence ends with `{product}.rtms_stopped` (the simulator
    /// stopped the stream on its own).
    pub(super) notify_stop: bool,
    /// Since when the stream has no ready signaling connection (while live).
    pub(super) signaling_lost_since: Option<Instant>,
    /// Since when a requested media kind has no socket while signaling is ready.
    pub(super) media_lost_since: Option<Instant>,
    /// Whose individual video goes out (`VIDEO_SUBSCRIPTION_REQ`); a new signaling
    /// session starts without one.
    pub(super) video_subscription: Option<u32>,
    /// How many of [`Timeline::camera_toggles`] the stream's media has passed.
    pub(super) camera_cursor: usize,
    pub(super) stats: SimStreamStats,
}

impl Core {
    /// Refusals that do not depend on the message: a finished stream, an injected fault.
    pub(super) fn admission(&mut self) -> Result<(), (u32, String)> {
        if matches!(self.phase, Phase::Stopping | Phase::Done(_)) {
            return Err((
                status::INVALID_RTMS_STREAM_ID,
                "the stream has ended".to_string(),
            ));
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

    /// Media may be written: live, no stop asked for, signaling ready, not paused, not
    /// held.
    pub(super) fn playing(&self) -> bool {
        self.phase == Phase::Live
            && self.stop_request.is_none()
            && !self.paused
            && self.hold_until.is_none()
            && self.ready
            && self.signaling.is_some()
    }

    /// Recomputes the derived state after any change: which kinds flow, the clock of a
    /// pause, since when signaling or media is missing.
    pub(super) fn update(&mut self, tl: &Timeline, now: Instant) {
        let playing = self.playing();
        for kind in MediaKind::ALL {
            let k = kind.index();
            if playing && self.owners[k].is_some() {
                if self.flow_since[k].is_none() {
                    self.flow_since[k] = Some(now);
                    if kind == MediaKind::Audio {
                        self.first_flow.get_or_insert(now);
                    }
                }
            } else {
                self.flow_since[k] = None;
            }
        }
        if self.phase != Phase::Live {
            self.signaling_lost_since = None;
            self.media_lost_since = None;
        } else if !(self.signaling.is_some() && self.ready) {
            self.signaling_lost_since.get_or_insert(now);
            self.media_lost_since = None;
        } else {
            self.signaling_lost_since = None;
            if self.media_connected(tl) {
                // Media is back: the stream is ACTIVE again (after a signaling loss the
                // ready ack says so).
                if self.media_lost_since.take().is_some() && tl.state_updates {
                    self.send_signaling(wire::stream_state_update(
                        &tl.stream_id,
                        stream_state::ACTIVE,
                        0,
                    ));
                }
            } else {
                self.media_lost_since.get_or_insert(now);
            }
        }
    }

    /// The next lifecycle notice's `event_ts`: now, and always newer than the last.
    pub(super) fn next_event_ts(&mut self) -> u64 {
        self.last_event_ts = now_ms().max(self.last_event_ts + 1);
        self.last_event_ts
    }

    /// Sends a lifecycle notice about the stream.
    pub(super) fn notify(&mut self, tl: &Timeline, step: Lifecycle, extra: Value) {
        let event_ts = self.next_event_ts();
        let notice = notices::lifecycle(
            tl.product,
            step,
            &tl.meeting_uuid,
            &tl.stream_id,
            event_ts,
            extra,
        );
        tl.hub.notify(notice);
    }

    fn media_conns(&self) -> Vec<u64> {
        self.conns
            .iter()
            .filter(|(_, c)| c.role == Role::Media)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Zoom's reaction to a lost signaling socket (already detached): every media socket
    /// dropped too, `{product}.rtms_interrupted`, and the signaling window.
    pub(super) fn signaling_lost(&mut self, tl: &Timeline) {
        if self.phase != Phase::Live {
            return;
        }
        for id in self.media_conns() {
            self.detach(id);
            self.send_to(id, Cmd::Drop);
        }
        self.missing_keepalives = false;
        self.stats.signaling_interruptions += 1;
        self.notify(tl, Lifecycle::Interrupted, json!({}));
    }

    /// Drops the signaling socket (after `STREAM_STATE_UPDATE` 2 with reason 13 when
    /// configured), then [`Core::signaling_lost`].
    pub(super) fn drop_signaling(&mut self, tl: &Timeline, close: Option<u16>) {
        if let Some(id) = self.signaling {
            if tl.state_updates && close.is_none() {
                self.send_signaling(wire::stream_state_update(
                    &tl.stream_id,
                    stream_state::INTERRUPTED,
                    stop_reason::SIGNAL_CONNECTION_INTERRUPTED,
                ));
            }
            self.detach(id);
            let cmd = match close {
                Some(code) => Cmd::Close(code, String::new(), None),
                None => Cmd::Drop,
            };
            self.send_to(id, cmd);
            self.signaling_lost(tl);
        }
    }

    /// Zoom's reaction to lost media sockets (`lost`: their media bits): `EVENT_UPDATE` 7
    /// on signaling, unasked, (and state 2 with reason 14 when configured), and the media
    /// window.
    pub(super) fn media_lost(&mut self, tl: &Timeline, lost: u64) {
        if self.phase != Phase::Live || lost == 0 {
            return;
        }
        self.missing_keepalives = false;
        self.stats.media_interruptions += 1;
        self.send_signaling(wire::media_interrupted_event(lost));
        if tl.state_updates {
            self.send_signaling(wire::stream_state_update(
                &tl.stream_id,
                stream_state::INTERRUPTED,
                stop_reason::DATA_CONNECTION_INTERRUPTED,
            ));
        }
    }

    /// Drops (or closes with `close`) every media socket, then [`Core::media_lost`].
    pub(super) fn drop_media(&mut self, tl: &Timeline, me: u64, close: Option<u16>) -> bool {
        let mut lost = 0;
        let mut mine = false;
        for id in self.media_conns() {
            // Detached now, so nothing more is planned for them before they are gone.
            lost |= self.detach(id);
            if id == me {
                mine = true;
            } else {
                let cmd = match close {
                    Some(code) => Cmd::Close(code, String::new(), None),
                    None => Cmd::Drop,
                };
                self.send_to(id, cmd);
            }
        }
        self.media_lost(tl, lost);
        mine
    }

    /// The stream's server died: every socket dropped, the stream moved to the next
    /// server generation, `{product}.rtms_started` with the new URL.
    pub(super) fn failover(&mut self, tl: &Timeline, me: u64) -> bool {
        if self.phase != Phase::Live && self.phase != Phase::Waiting {
            return false;
        }
        let mut mine = false;
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        for id in ids {
            self.detach(id);
            if id == me {
                mine = true;
            } else {
                self.send_to(id, Cmd::Drop);
            }
        }
        self.generation += 1;
        self.missing_keepalives = false;
        self.stats.failovers += 1;
        let url = tl.hub.signaling_url(self.generation);
        self.notify(tl, Lifecycle::Started, notices::started_extra(&url));
        mine
    }
}
