//! The per-stream supervisor task: it runs the stop sequence when one is requested (or
//! the signaling or media window ran out: stop reason 19), and ends pauses and holds.
//! A stop the simulator decided on its own ends with `{product}.rtms_stopped`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use zoomhost_protocol::rtms::msg::event_type;
use zoomhost_protocol::rtms::product::Lifecycle;
use zoomhost_protocol::rtms::states::{session_state, stop_reason, stream_state};

use super::state::Core;
use super::timeline::Timeline;
use super::{Cmd, Phase, Role, SimStream, StreamOutcome};
use crate::rtms::{notices, wire};

/// How long the stop sequence waits for a socket to finish closing.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

impl SimStream {
    /// The stop sequence: media flushed already; on signaling participant-left (if
    /// subscribed), TERMINATING, TERMINATED, STOPPED; then close 1000 on every socket.
    async fn run_stop(&self, reason: u32, outcome: StreamOutcome) {
        {
            let mut core = self.lock();
            core.phase = Phase::Stopping;
            core.update(&self.tl, Instant::now());
        }
        self.bump();
        // Media stopped: let the client read what was written before the state messages.
        tokio::time::sleep(self.tl.flush_grace).await;
        let (signaling, media) = {
            let core = self.lock();
            let signaling = core
                .signaling
                .and_then(|id| core.conns.get(&id))
                .map(|c| c.tx.clone());
            let media: Vec<_> = core
                .conns
                .values()
                .filter(|c| c.role == Role::Media)
                .map(|c| c.tx.clone())
                .collect();
            if let Some(signaling) = &signaling {
                let mut messages = Vec::new();
                if core.subscriptions.contains(&event_type::PARTICIPANT_LEAVE)
                    && !self.tl.participants.is_empty()
                {
                    messages.push(wire::participants_event(
                        event_type::PARTICIPANT_LEAVE,
                        &self.tl.participants,
                    ));
                }
                let id = &self.tl.stream_id;
                messages.push(wire::stream_state_update(
                    id,
                    stream_state::TERMINATING,
                    reason,
                ));
                messages.push(wire::stream_state_update(
                    id,
                    stream_state::TERMINATED,
                    reason,
                ));
                messages.push(wire::session_state_update(
                    &self.tl.session_id,
                    session_state::STOPPED,
                    reason,
                ));
                for msg in messages {
                    let _ = signaling.send(Cmd::Send(msg));
                }
            }
            (signaling, media)
        };
        self.bump();
        let close = |tx: mpsc::UnboundedSender<Cmd>| async move {
            let (ack, done) = oneshot::channel();
            if tx.send(Cmd::Close(1000, String::new(), Some(ack))).is_ok() {
                let _ = tokio::time::timeout(CLOSE_WAIT, done).await;
            }
        };
        futures_util::future::join_all(media.into_iter().map(close)).await;
        if let Some(signaling) = signaling {
            close(signaling).await;
        }
        {
            let mut core = self.lock();
            if core.phase == Phase::Stopping {
                core.phase = Phase::Done(outcome);
            }
            core.update(&self.tl, Instant::now());
            if core.notify_stop {
                core.notify(&self.tl, Lifecycle::Stopped, notices::stopped_extra(reason));
            }
        }
        tracing::debug!(stream = %self.tl.stream_id, ?outcome, "RTMS sim: stream ended");
        self.bump();
    }
}

/// What the supervisor does next.
pub(super) enum Step {
    Stop(u32, StreamOutcome),
    Wait(Option<Instant>),
    Exit,
}

/// One per stream: stop sequence, pause ends, resume-window expiry.
pub(in crate::rtms) async fn supervise(
    stream: Arc<SimStream>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut epoch = stream.epoch.subscribe();
    let windows = (stream.config.resume_window, stream.config.media_window);
    loop {
        epoch.borrow_and_update();
        let (step, resumed) = stream.lock().supervise(&stream.tl, Instant::now(), windows);
        if resumed {
            stream.bump();
            continue;
        }
        match step {
            Step::Exit => return,
            Step::Stop(reason, outcome) => {
                stream.run_stop(reason, outcome).await;
                return;
            }
            Step::Wait(deadline) => {
                tokio::select! {
                    _ = crate::rtms::shut_down(&mut shutdown) => {
                        stream.abandon();
                        return;
                    }
                    _ = epoch.changed() => {}
                    _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)),
                        if deadline.is_some() => {}
                }
            }
        }
    }
}

impl Core {
    /// The supervisor's next step; `true` when a pause or hold just ended (state
    /// changed). `windows`: the signaling and the media window.
    pub(super) fn supervise(
        &mut self,
        tl: &Timeline,
        now: Instant,
        (signaling_window, media_window): (Duration, Duration),
    ) -> (Step, bool) {
        match self.phase {
            Phase::Done(_) | Phase::Stopping => return (Step::Exit, false),
            Phase::Waiting | Phase::Live => {}
        }
        if let Some(reason) = self.stop_request.take() {
            return (
                Step::Stop(reason, StreamOutcome::Completed { reason }),
                false,
            );
        }
        if self.pause_until.is_some_and(|until| until <= now) {
            self.pause_until = None;
            self.paused = false;
            self.resume_clock(tl, now);
            let msg = wire::stream_state_update(&tl.stream_id, stream_state::RESUMED, 0);
            self.send_signaling(msg);
            self.update(tl, now);
            return (Step::Wait(None), true);
        }
        if self.deferred.front().is_some_and(|(at, _)| *at <= now) {
            while self.deferred.front().is_some_and(|(at, _)| *at <= now) {
                if let Some((_, fault)) = self.deferred.pop_front() {
                    let mut ignored = super::SelfAction::None;
                    self.apply_fault(tl, 0, fault, now, &mut ignored);
                }
            }
            self.update(tl, now);
            return (Step::Wait(None), true);
        }
        if self.hold_until.is_some_and(|until| until <= now) {
            self.hold_until = None;
            self.update(tl, now);
            return (Step::Wait(None), true);
        }
        let expiry = [
            self.signaling_lost_since
                .map(|since| since + signaling_window),
            self.media_lost_since.map(|since| since + media_window),
        ]
        .into_iter()
        .flatten()
        .min();
        if expiry.is_some_and(|at| at <= now) {
            tracing::info!(stream = %tl.stream_id, "RTMS sim: no reconnection within the window");
            self.notify_stop = true;
            return (
                Step::Stop(
                    stop_reason::AWAIT_RECONNECTION_TIMEOUT,
                    StreamOutcome::TimedOut,
                ),
                false,
            );
        }
        let deferred = self.deferred.front().map(|(at, _)| *at);
        let deadline = [expiry, self.pause_until, self.hold_until, deferred]
            .into_iter()
            .flatten()
            .min();
        (Step::Wait(deadline), false)
    }
}
