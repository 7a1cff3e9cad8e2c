//! What connection tasks report to a stream: accepted and refused handshakes, the
//! signaling requests (event subscription, ready acknowledgement, state requests, close
//! request), keep-alives, and connection ends (with Zoom's reaction to a lost socket).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;
use zoomhost_protocol::rtms::msg::{self, event_type};
use zoomhost_protocol::rtms::states::{session_state, stop_reason, stream_state};
use zoomhost_protocol::rtms::{control, language};

use super::{Cmd, ConnEntry, Exit, Phase, Role, SimStream};
use crate::rtms::source::{self, AudioPlan};
use crate::rtms::status;
use crate::rtms::wire;
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

    /// Records a handshake that reached a server generation the stream has left.
    pub(in crate::rtms) fn stale_handshake(&self) {
        self.lock().stats.stale_handshakes += 1;
    }

    /// Accepts a signaling connection; refused with 8 (duplicate signal request) while
    /// the stream's earlier signaling connection is still open: Zoom allows one.
    /// `buffer_data` is the request's (absent: true); it matters until audio first flowed.
    pub(in crate::rtms) fn register_signaling(
        &self,
        id: u64,
        tx: mpsc::UnboundedSender<Cmd>,
        buffer_data: Option<bool>,
    ) -> Result<(), (u32, String)> {
        {
            let mut core = self.lock();
            core.admission()?;
            if let Some(old) = core.signaling {
                if core.conns.contains_key(&old) {
                    return Err((
                        status::DUPLICATE_SIGNAL_REQUEST,
                        "duplicate signal request: the stream's signaling connection is still open"
                            .to_string(),
                    ));
                }
            }
            if core.first_flow.is_none() {
                core.buffer_data = buffer_data.unwrap_or(true);
            }
            core.signaling = Some(id);
            core.conns.insert(
                id,
                ConnEntry {
                    tx,
                    role: Role::Signaling,
                },
            );
            core.ready = false;
            // A video subscription belongs to a signaling session: the client asks again.
            core.video_subscription = None;
            core.phase = Phase::Live;
            core.stats.signaling_handshakes += 1;
            core.update(&self.tl, Instant::now());
        }
        self.bump();
        Ok(())
    }

    /// Accepts a media connection for `kinds` and returns the effective `media_params`;
    /// refused with 16 (duplicate media data connection) when another open socket carries
    /// one of the kinds.
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
            for &kind in kinds {
                if let Some(other) = core.owners[kind.index()] {
                    if other != id && core.conns.contains_key(&other) {
                        return Err((
                            status::DUPLICATE_MEDIA_DATA_CONNECTION,
                            format!(
                                "duplicate media data connection: {} is carried by another open connection",
                                kind.key()
                            ),
                        ));
                    }
                }
            }
            let mut params = Map::new();
            for &kind in kinds {
                let asked = requested.get(kind.key());
                if kind == MediaKind::Transcript {
                    check_src_language(asked)?;
                }
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
                        core.frame_ms = u64::from(plan.format.send_rate).max(1);
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
                    // Transcripts carry the language asked for, as Zoom's number.
                    if let Some(lang) = effective
                        .as_ref()
                        .and_then(|p| p.get("src_language"))
                        .and_then(Value::as_i64)
                        .filter(|&n| n != i64::from(language::NONE))
                    {
                        core.language = lang.into();
                    }
                }
                if let Some(effective) = effective {
                    params.insert(kind.key().to_string(), effective);
                }
            }
            let sources = core.sources();
            for &kind in kinds {
                let k = kind.index();
                core.owners[k] = Some(id);
                if tl.count(kind, sources) > 0 {
                    core.wanted[k] = true;
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
    /// newly subscribed ones (participants, current speaker). Events 1 and 7 go out
    /// whether subscribed or not.
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
        if let (true, Some(speaker)) = (
            added.contains(&event_type::ACTIVE_SPEAKER_CHANGE),
            core.last_speaker,
        ) {
            core.send_signaling(wire::speaker_event(&self.tl.participants[speaker]));
        }
        if added.contains(&event_type::PARTICIPANT_VIDEO_ON) {
            core.cameras_on_now(&self.tl);
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
            Phase::Live
                if core.ever_ready
                    && (core.signaling_lost_since.is_some() || core.media_lost_since.is_some()) =>
            {
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
            if core.phase == Phase::Live && core.stop_request.is_none() {
                core.stop_request = Some(stop_reason::RECEIVER_REQUEST_CLOSE);
                core.notify_stop = true;
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

    /// Connection `id` is about to be dropped for unanswered keep-alives (the reaction
    /// follows when it is gone, [`SimStream::conn_exit`]); media is held back for the
    /// flush grace first. Returns how long to wait, and the `STREAM_STATE_UPDATE` to
    /// write after that, right before the drop (INTERRUPTED with reason 13 when it is the
    /// signaling connection and state updates are on).
    pub(in crate::rtms) fn keepalive_timeout(&self, id: u64) -> (Option<String>, Duration) {
        let grace = self.tl.flush_grace;
        let msg = {
            let mut core = self.lock();
            core.stats.dropped_for_keepalive += 1;
            if !grace.is_zero() {
                core.hold(Instant::now() + grace);
                core.update(&self.tl, Instant::now());
            }
            let signaling = core.signaling == Some(id) && core.phase == Phase::Live;
            (signaling && self.tl.state_updates).then(|| {
                wire::stream_state_update(
                    &self.tl.stream_id,
                    stream_state::INTERRUPTED,
                    stop_reason::SIGNAL_CONNECTION_INTERRUPTED,
                )
            })
        };
        self.bump();
        (msg, grace)
    }

    pub(in crate::rtms) fn client_close_code(&self, code: u16) {
        self.lock().stats.client_close_codes.push(code);
    }

    /// Connection `id` ended. A socket the stream still counted on is a loss, followed
    /// by Zoom's reaction: signaling takes media with it and `rtms_interrupted` goes out;
    /// media gets `EVENT_UPDATE` 7 on signaling. That holds for a client's close frame
    /// too, even 1000: only `STREAM_CLOSE_REQ` ends a stream from the client's side (Zoom's
    /// official SDK closes signaling with 1000 when a media socket drops, then rejoins).
    pub(in crate::rtms) fn conn_exit(&self, id: u64, exit: Exit) {
        {
            let mut core = self.lock();
            if core.conns.remove(&id).is_none() {
                return;
            }
            let live = core.phase == Phase::Live;
            let was_signaling = core.signaling == Some(id);
            let lost = core.detach(id);
            if live && exit != Exit::Shutdown {
                if was_signaling {
                    core.signaling_lost(&self.tl);
                } else if lost != 0 {
                    core.media_lost(&self.tl, lost);
                }
            }
            core.update(&self.tl, Instant::now());
        }
        self.bump();
    }
}

/// Refuses a transcript `src_language` that is not one of Zoom's language numbers (text
/// included) with 43, as Zoom does; an absent or `null` one is fine.
fn check_src_language(asked: Option<&Value>) -> Result<(), (u32, String)> {
    match asked.and_then(|p| p.get("src_language")) {
        None | Some(Value::Null) => Ok(()),
        Some(lang) if lang.as_i64().is_some_and(language::is_valid) => Ok(()),
        Some(lang) => Err((
            status::INVALID_MEDIA_TRANSCRIPT_SOURCE_LANGUAGE,
            format!(
                "invalid transcript src_language {lang}: one of Zoom's language numbers, \
                 -1 to 36"
            ),
        )),
    }
}
