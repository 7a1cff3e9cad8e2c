//! Injected faults ([`Fault`]): what each does to the stream's connections, and what it
//! asks of the socket that committed the frame it fired after.

use std::time::Duration;

use tokio::time::Instant;
use zoomhost_protocol::rtms::msg::event_type;
use zoomhost_protocol::rtms::states::stream_state;

use super::state::Core;
use super::timeline::Timeline;
use super::{Cmd, Role};
use crate::rtms::wire;
use crate::rtms::Fault;

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

impl Core {
    pub(super) fn apply_fault(
        &mut self,
        tl: &Timeline,
        me: u64,
        fault: Fault,
        now: Instant,
        action: &mut SelfAction,
    ) {
        tracing::info!(stream = %tl.stream_id, "RTMS sim: fault {fault:?}");
        let media: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.role == Role::Media)
            .map(|(id, _)| *id)
            .collect();
        match fault {
            Fault::DropMedia | Fault::CloseMedia(_) => {
                // Detached now, so nothing more is planned for them before they are gone.
                let mut lost = 0;
                for &id in &media {
                    lost |= self.detach(id);
                    let (own, cmd) = match fault {
                        Fault::CloseMedia(code) => (
                            SelfAction::Close(code),
                            Cmd::Close(code, String::new(), None),
                        ),
                        _ => (SelfAction::Drop, Cmd::Drop),
                    };
                    if id == me {
                        action.raise(own);
                    } else {
                        self.send_to(id, cmd);
                    }
                }
                if fault == Fault::DropMedia
                    && lost != 0
                    && self
                        .subscriptions
                        .contains(&event_type::MEDIA_CONNECTION_INTERRUPTED)
                {
                    self.send_signaling(wire::media_interrupted_event(lost));
                }
            }
            Fault::DropSignaling | Fault::CloseSignaling(_) => {
                if let Some(id) = self.signaling {
                    self.detach(id);
                    let cmd = match fault {
                        Fault::CloseSignaling(code) => Cmd::Close(code, String::new(), None),
                        _ => Cmd::Drop,
                    };
                    self.send_to(id, cmd);
                }
            }
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
                self.paused = true;
                self.pause_until = Some(now + duration);
                let msg = wire::stream_state_update(&tl.stream_id, stream_state::PAUSED, 0);
                self.send_signaling(msg);
            }
            Fault::Stop(reason) => {
                self.stop_request.get_or_insert(reason);
            }
        }
    }
}
