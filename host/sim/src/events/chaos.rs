//! Event-side chaos: the event WebSocket failing the ways Zoom's does, on a cycle, while a
//! steady stream of events flows.
//!
//! The faults ([`EventFault`]): an abrupt drop (no close frame), a close 1001, the server
//! closing at token expiry while the OAuth endpoint answers 500 for a while (so the
//! client's token refresh must retry), and a stall in which the server neither reads nor
//! writes (heartbeats go unanswered until the client gives the connection up). Every event
//! pushed is recorded by the [`EventSim`] ([`EventSim::sent`] while a connection was live,
//! [`EventSim::missed`] otherwise), so a test counts loss and duplication.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::EventSim;
use crate::util::lock;

/// One event-side fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventFault {
    /// Drop the TCP connection without a close frame.
    Drop,
    /// Close with this code (1001: going away).
    Close(u16),
    /// Expire the live connection's token and close as at expiry, with every OAuth
    /// token request answering 500 for `oauth_down`.
    TokenExpiry {
        /// How long the OAuth endpoint fails.
        oauth_down: Duration,
    },
    /// Neither read nor write (no heartbeat replies) for this long.
    Stall(Duration),
}

impl std::fmt::Display for EventFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EventFault::Drop => f.write_str("event WebSocket dropped (no close frame)"),
            EventFault::Close(code) => write!(f, "event WebSocket closed with {code}"),
            EventFault::TokenExpiry { oauth_down } => write!(
                f,
                "event WebSocket closed at token expiry; OAuth answers 500 for {:.1} s",
                oauth_down.as_secs_f64()
            ),
            EventFault::Stall(d) => write!(
                f,
                "event WebSocket stalled for {:.1} s (no heartbeat replies)",
                d.as_secs_f64()
            ),
        }
    }
}

impl EventSim {
    /// Injects one fault into the live connection (a no-op without one).
    pub async fn inject(&self, fault: &EventFault) {
        match fault {
            EventFault::Drop => self.drop_connection().await,
            EventFault::Close(code) => self.close_connection(*code, "going away").await,
            EventFault::TokenExpiry { oauth_down } => {
                self.oauth_outage_for(*oauth_down, 500);
                self.expire_token().await;
            }
            EventFault::Stall(d) => self.stall(*d),
        }
    }

    /// Pushes `name` every `every` (payload ids `steady-000001`, ...) until the returned
    /// handle is dropped or stopped.
    pub fn steady_stream(&self, name: &str, every: Duration) -> SteadyStream {
        let pushed = Arc::new(AtomicU64::new(0));
        let (sim, name, count) = (self.clone(), name.to_string(), pushed.clone());
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                // Stops only between two pushes, so every push is recorded as sent or
                // missed before `stop` returns.
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.wait_for(|stop| *stop) => return,
                }
                let n = count.fetch_add(1, Ordering::Relaxed) + 1;
                let payload = json!({
                    "id": format!("steady-{n:06}"),
                    "account_id": crate::credentials::ACCOUNT_ID,
                    "object": {"uuid": "steady-meeting==", "topic": "Steady stream", "seq": n},
                });
                sim.push_event(&name, payload).await;
            }
        });
        SteadyStream {
            task: Mutex::new(Some(task)),
            stop,
            pushed,
        }
    }

    /// Injects `chaos.faults` in turn, one every `chaos.every`, forever (until the handle
    /// is dropped); `notify` sees each fault as it is injected.
    pub fn start_chaos(
        &self,
        chaos: EventChaos,
        notify: impl Fn(&EventFault) + Send + Sync + 'static,
    ) -> ChaosRun {
        let injected = Arc::new(Mutex::new(Vec::new()));
        let (sim, record) = (self.clone(), injected.clone());
        let task = tokio::spawn(async move {
            if chaos.faults.is_empty() {
                return;
            }
            for fault in chaos.faults.iter().cycle() {
                tokio::time::sleep(chaos.every).await;
                if !sim.wait_connected(chaos.every).await {
                    continue;
                }
                notify(fault);
                tracing::info!("event sim chaos: {fault}");
                sim.inject(fault).await;
                lock(&record).push((Instant::now(), fault.clone()));
            }
        });
        ChaosRun {
            task: task.abort_handle(),
            injected,
        }
    }
}

/// A running steady stream; [`SteadyStream::stop`] ends it between two pushes, dropping
/// it aborts it.
#[derive(Debug)]
pub struct SteadyStream {
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    stop: tokio::sync::watch::Sender<bool>,
    pushed: Arc<AtomicU64>,
}

impl SteadyStream {
    /// Events pushed so far (delivered or missed).
    pub fn pushed(&self) -> u64 {
        self.pushed.load(Ordering::Relaxed)
    }

    /// Stops pushing and returns once the push in progress, if any, has finished and been
    /// recorded ([`EventSim::sent`] or [`EventSim::missed`]).
    pub async fn stop(&self) {
        self.stop.send_replace(true);
        let task = lock(&self.task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl Drop for SteadyStream {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

/// Which faults, and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventChaos {
    /// Injected in this order, over and over.
    pub faults: Vec<EventFault>,
    /// Time between two faults (each waits for a live connection first).
    pub every: Duration,
}

impl EventChaos {
    /// Every fault of Zoom's event WebSocket: a drop, a close 1001, a token expiry with
    /// OAuth down for `oauth_down`, and a stall of `stall` (longer than the client's
    /// silence timeout, so it notices); one every `every`.
    pub fn storm(every: Duration, oauth_down: Duration, stall: Duration) -> Self {
        Self {
            faults: vec![
                EventFault::Drop,
                EventFault::Close(1001),
                EventFault::TokenExpiry { oauth_down },
                EventFault::Stall(stall),
            ],
            every,
        }
    }
}

/// A running chaos cycle; stops when dropped.
#[derive(Debug)]
pub struct ChaosRun {
    task: tokio::task::AbortHandle,
    injected: Arc<Mutex<Vec<(Instant, EventFault)>>>,
}

impl ChaosRun {
    /// The faults injected so far, with when.
    pub fn injected(&self) -> Vec<(Instant, EventFault)> {
        lock(&self.injected).clone()
    }

    /// Stops injecting.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for ChaosRun {
    fn drop(&mut self) {
        self.task.abort();
    }
}
