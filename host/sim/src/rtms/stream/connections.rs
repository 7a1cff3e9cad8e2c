//! What connection tasks report to a stream: accepted and refused handshakes, the
//! signaling requests (event subscription, ready acknowledgement, state requests, close
//! request), keep-alives, and connection ends.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;
use zoomhost_protocol::rtms::control;
use zoomhost_protocol::rtms::msg::{self, event_type};
use zoomhost_protocol::rtms::states::{session_state, stop_reason, stream_state};

use super::{Cmd, ConnEntry, Exit, Phase, Role, SimStream, StreamOutcome};
use crate::rtms::source::{self, AudioPlan};
use crate::rtms::wire::{self, status};
use crate::rtms::MediaKind;
use crate::util::now_ms;

impl SimStream {
    // --- Handshakes -------------------------------------------------------------------

    pub(in crate::rtms) fn count_connection(&self) {
        self.lock().stats.connections += 1;
    }

    pub(in crate::rtms) fn record_rejection(&self, msg_type: u64, status_code: u32) {
        self.lock().stats.rejections.push((msg_type, status_code));
    }

    /// Accepts a signaling connection (an older one is dropped: Zoom allows one).
    pub(in crate::rtms) fn register_signaling(
        &self,
        id: u64,
        tx: mpsc::UnboundedSender<Cmd>,
    ) -> Result<(), (u32, String)> {
        {
            let mut core = self.lock();
            core.admission()?;
            if let Some(old) = core.signaling.replace(id) {
                core.send_to(old, Cmd::Drop);
            }
            core.conns.insert(
                id,
                ConnEntry {
                    tx,
                    role: Role::Signaling,
                },
            );
            core.ready = false;
            core.phase = Phase::Live;
            core.stats.signaling_handshakes += 1;
            core.update(&self.tl, Instant::now());
        }
        self.bump();
        Ok(())
    }

    /// Accepts a media connection for `kinds` and returns the effective `media_params`.
    /// Kinds another socket carried move to this one (a socket left with none is
    /// dropped).
    pub(in crate::rtms) fn register_media(
        &self,
        id: u64,
        tx: mpsc::UnboundedSender<Cmd>,
        kinds: &[MediaKind],
        requested: &Value,
    ) -> Result<Value, (u32, String)> {
        let tl = &self.tl;
        let params = {
            let mut core = self.lock();
            core.admission()?;
            let mut params = Map::new();
            for &kind in kinds {
                let asked = requested.get(kind.key());
                let effective = if kind == MediaKind::Audio {
                    if core.audio.is_none() {
                        let plan = AudioPlan::new(
                            &tl.input,
                            &tl.participants,
                            tl.data_opt,
                            tl.confirm_audio.as_ref(),
                            asked.unwrap_or(&Value::Null),
                        )
                        .map_err(|reason| (status::INVALID_MEDIA_PARAMS, reason))?;
                        core.audio = Some(Arc::new(plan));
                    }
                    core.audio.as_ref().map(|a| a.params.clone())
                } else {
                    let slot = &mut core.other_params[kind.index()];
                    Some(
                        slot.get_or_insert_with(|| source::other_params(kind.key(), asked))
                            .clone(),
                    )
                };
                if kind == MediaKind::Transcript {
                    if let Some(lang) = effective
                        .as_ref()
                        .and_then(|p| p.get("src_language"))
                        .and_then(Value::as_str)
                    {
                        core.language = lang.to_string();
                    }
                }
                if let Some(effective) = effective {
                    params.insert(kind.key().to_string(), effective);
                }
            }
            let sources = core.sources();
            let mut losers = Vec::new();
            for &kind in kinds {
                let k = kind.index();
                if let Some(old) = core.owners[k].replace(id) {
                    if old != id {
                        losers.push(old);
                    }
                }
                if tl.count(kind, sources) > 0 {
                    core.wanted[k] = true;
                }
            }
            for old in losers {
                if !core.owners.contains(&Some(old)) {
                    core.send_to(old, Cmd::Drop);
                }
            }
            let audio = MediaKind::Audio.index();
            if kinds.contains(&MediaKind::Audio)
                && tl.resend_on_resume > 0
                && core.cursors[audio] > 0
            {
                let to = core.cursors[audio];
                let from = to.saturating_sub(u64::from(tl.resend_on_resume) * u64::from(sources));
                core.resend.insert(id, (from..to).collect());
            }
            core.conns.insert(
                id,
                ConnEntry {
                    tx,
                    role: Role::Media,
                },
            );
            core.stats.media_handshakes += 1;
            core.update(tl, Instant::now());
            Value::Object(params)
        };
        self.bump();
        Ok(params)
    }

    // --- Signaling requests -----------------------------------------------------------

    /// `EVENT_SUBSCRIPTION`: records the event types; sends what is already known for
    /// newly subscribed ones (participants, first packet, current speaker).
    pub(in crate::rtms) fn subscribe(&self, msg: &Value) {
        let mut core = self.lock();
        let mut added = BTreeSet::new();
        for (event_type, subscribe) in control::subscriptions(msg) {
            if subscribe {
                if core.subscriptions.insert(event_type) {
                    added.insert(event_type);
                }
            } else {
                core.subscriptions.remove(&event_type);
            }
        }
        if added.contains(&event_type::PARTICIPANT_JOIN) && !self.tl.participants.is_empty() {
            let msg = wire::participants_event(event_type::PARTICIPANT_JOIN, &self.tl.participants);
            core.send_signaling(msg);
        }
        if let (true, Some(ts)) = (
            added.contains(&event_type::FIRST_PACKET_TIMESTAMP),
            core.first_packet,
        ) {
            core.send_signaling(wire::first_packet_event(ts));
        }
        if let (true, Some(speaker)) = (
            added.contains(&event_type::ACTIVE_SPEAKER_CHANGE),
            core.last_speaker,
        ) {
            core.send_signaling(wire::speaker_event(&self.tl.participants[speaker]));
        }
    }

    /// `CLIENT_READY_ACK` on signaling connection `id`.
    pub(in crate::rtms) fn ready_ack(&self, id: u64) {
        {
            let mut core = self.lock();
            if core.signaling != Some(id) || core.phase != Phase::Live {
                return;
            }
            core.stats.ready_acks += 1;
            if !core.ready {
                core.ready = true;
                if !core.ever_ready {
                    core.ever_ready = true;
                    let msg =
                        wire::session_state_update(&self.tl.session_id, session_state::STARTED, 0);
                    core.send_signaling(msg);
                }
                let msg = wire::stream_state_update(&self.tl.stream_id, stream_state::ACTIVE, 0);
                core.send_signaling(msg);
            }
            core.update(&self.tl, Instant::now());
        }
        self.bump();
    }

    /// `SESSION_STATE_RESP` for a `SESSION_STATE_REQ`.
    pub(in crate::rtms) fn session_state_resp(&self) -> String {
        let core = self.lock();
        let state = match core.phase {
            Phase::Waiting => session_state::INACTIVE,
            Phase::Live if core.paused => session_state::PAUSED,
            Phase::Live if core.ever_ready => session_state::STARTED,
            Phase::Live => session_state::INACTIVE,
            Phase::Stopping | Phase::Done(_) => session_state::STOPPED,
        };
        json!({
            "msg_type": msg::SESSION_STATE_RESP,
            "rtms_session_id": self.tl.session_id,
            "state": state,
            "timestamp": now_ms(),
        })
        .to_string()
    }

    /// `STREAM_STATE_RESP` for a `STREAM_STATE_REQ`.
    pub(in crate::rtms) fn stream_state_resp(&self) -> String {
        let core = self.lock();
        let state = match core.phase {
            Phase::Waiting => stream_state::INACTIVE,
            Phase::Live if core.paused => stream_state::PAUSED,
            Phase::Live if core.ever_ready && core.interrupted_since.is_some() => {
                stream_state::INTERRUPTED
            }
            Phase::Live if core.ever_ready => stream_state::ACTIVE,
            Phase::Live => stream_state::INACTIVE,
            Phase::Stopping => stream_state::TERMINATING,
            Phase::Done(_) => stream_state::TERMINATED,
        };
        json!({
            "msg_type": msg::STREAM_STATE_RESP,
            "rtms_stream_id": self.tl.stream_id,
            "state": state,
            "timestamp": now_ms(),
        })
        .to_string()
    }

    /// `STREAM_CLOSE_REQ`: the stop sequence with reason 20 (receiver request close).
    pub(in crate::rtms) fn request_close(&self) {
        {
            let mut core = self.lock();
            if core.phase == Phase::Live {
                core.stop_request
                    .get_or_insert(stop_reason::RECEIVER_REQUEST_CLOSE);
            }
        }
        self.bump();
    }

    // --- Keep-alive and connection ends -----------------------------------------------

    pub(in crate::rtms) fn keepalive_sent(&self) {
        self.lock().stats.keepalives_sent += 1;
    }

    pub(in crate::rtms) fn keepalive_answered(&self) {
        self.lock().stats.keepalives_answered += 1;
    }

    /// Connection `id` is about to be dropped for unanswered keep-alives: tells the
    /// signaling connection (if it is another one) that the stream is interrupted.
    pub(in crate::rtms) fn keepalive_timeout(&self, id: u64) {
        let mut core = self.lock();
        core.stats.dropped_for_keepalive += 1;
        if core.signaling.is_some_and(|s| s != id) && core.phase == Phase::Live {
            let msg = wire::stream_state_update(
                &self.tl.stream_id,
                stream_state::INTERRUPTED,
                stop_reason::KEEP_ALIVE_TIMEOUT,
            );
            core.send_signaling(msg);
        }
    }

    pub(in crate::rtms) fn client_close_code(&self, code: u16) {
        self.lock().stats.client_close_codes.push(code);
    }

    /// Connection `id` ended.
    pub(in crate::rtms) fn conn_exit(&self, id: u64, exit: Exit) {
        {
            let mut core = self.lock();
            if core.conns.remove(&id).is_none() {
                return;
            }
            let live = core.phase == Phase::Live;
            if core.signaling == Some(id) && live && exit == Exit::ClientClosed(Some(1000)) {
                core.phase = Phase::Done(StreamOutcome::ClientClosed);
                for conn in core.conns.values() {
                    let _ = conn.tx.send(Cmd::Close(1000, String::new(), None));
                }
            }
            let lost = core.detach(id);
            if live
                && lost != 0
                && exit.abrupt()
                && core
                    .subscriptions
                    .contains(&event_type::MEDIA_CONNECTION_INTERRUPTED)
            {
                core.send_signaling(wire::media_interrupted_event(lost));
            }
            core.update(&self.tl, Instant::now());
        }
        self.bump();
    }
}
