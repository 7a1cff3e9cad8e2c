//! Injected faults ([`Fault`]): what each does to the stream's connections (with Zoom's
//! reaction, [`super::state`]), and what it asks of the socket that committed the frame
//! it fired after.

use std::time::Duration;

use tokio::time::Instant;
use zoomhost_protocol::rtms::states::stream_state;

use super::state::Core;
use super::timeline::Timeline;
use super::{Cmd, Role};
use crate::rtms::wire;
use crate::rtms::{Fault, SocketKind};

/// What a fault asks of the socket that committed the frame it fired after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::rtms) enum SelfAction {
    None,
    Drop,
    Close(u16),
    Stall(Duration),
}

impl SelfAction {
    fn rank(self) -> u8 {
        match self {
            SelfAction::None => 0,
            SelfAction::Stall(_) => 1,
            SelfAction::Close(_) => 2,
            SelfAction::Drop => 3,
        }
    }

    fn raise(&mut self, to: SelfAction) {
        if to.rank() > self.rank() {
            *self = to;
        }
    }
}

impl Fault {
    /// Whether it drops or closes sockets (and so waits for the flush grace).
    fn ends_sockets(&self) -> bool {
        matches!(
            self,
            Fault::DropMedia
                | Fault::DropSignaling
                | Fault::Failover
                | Fault::CloseMedia(_)
                | Fault::CloseSignaling(_)
        )
    }
}

impl Core {
    /// Fires `fault`: at once, or, for one that drops or closes sockets, once the flush
    /// grace is over, with media held back meanwhile (see [`Core::apply_fault`]).
    pub(super) fn fire_fault(
        &mut self,
        tl: &Timeline,
        me: u64,
        fault: Fault,
        now: Instant,
        action: &mut SelfAction,
    ) {
        if fault.ends_sockets() && !tl.flush_grace.is_zero() {
            let at = now + tl.flush_grace;
            self.hold(at);
            self.deferred.push_back((at, fault));
        } else {
            self.apply_fault(tl, me, fault, now, action);
        }
    }

    /// Holds media back until `until` (or later, if already held longer).
    pub(super) fn hold(&mut self, until: Instant) {
        self.hold_until = Some(self.hold_until.map_or(until, |h| h.max(until)));
    }

    /// Applies `fault`; `me` is the connection that committed the frame it fired after
    /// (0: none), whose own part comes back in `action`.
    pub(super) fn apply_fault(
        &mut self,
        tl: &Timeline,
        me: u64,
        fault: Fault,
        now: Instant,
        action: &mut SelfAction,
    ) {
        tracing::info!(stream = %tl.stream_id, "RTMS sim: fault {fault:?}");
        match fault {
            Fault::DropMedia => {
                if self.drop_media(tl, me, None) {
                    action.raise(SelfAction::Drop);
                }
            }
            Fault::CloseMedia(code) => {
                if self.drop_media(tl, me, Some(code)) {
                    action.raise(SelfAction::Close(code));
                }
            }
            Fault::DropSignaling => self.drop_signaling(tl, None),
            Fault::CloseSignaling(code) => self.drop_signaling(tl, Some(code)),
            Fault::Failover => {
                if self.failover(tl, me) {
                    action.raise(SelfAction::Drop);
                }
            }
            Fault::MissKeepAlives(which) => {
                self.missing_keepalives = true;
                for (id, conn) in &self.conns {
                    let hit = match which {
                        SocketKind::Signaling => self.signaling == Some(*id),
                        SocketKind::Media => conn.role == Role::Media,
                    };
                    if hit {
                        let _ = conn.tx.send(Cmd::MissKeepAlives);
                    }
                }
            }
            Fault::HoldMedia(duration) => self.hold(now + duration),
            Fault::Reject(code) => self.reject_next.push_back(code),
            Fault::Stall(duration) => {
                for (&id, conn) in &self.conns {
                    if id == me {
                        action.raise(SelfAction::Stall(duration));
                    } else {
                        let _ = conn.tx.send(Cmd::Stall(duration));
                    }
                }
            }
            Fault::Pause(duration) => {
                if !self.paused {
                    self.pause_clock(tl, now);
                }
                self.paused = true;
                self.pause_until = Some(now + duration);
                let msg = wire::stream_state_update(&tl.stream_id, stream_state::PAUSED, 0);
                self.send_signaling(msg);
            }
            Fault::Stop(reason) => {
                if self.stop_request.is_none() {
                    self.stop_request = Some(reason);
                    self.notify_stop = true;
                }
            }
        }
    }
}
