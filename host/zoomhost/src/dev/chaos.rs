//! `zoomhost dev --chaos`: the simulator fails the way Zoom does while the scenario plays,
//! and the live view shows every outage and its recovery.
//!
//! Event side: a steady stream of events, and a cycle of the event WebSocket's faults
//! (dropped, closed with 1001, closed at token expiry while OAuth answers 500 for a
//! while, stalled without heartbeat replies), one every [`ChaosOptions::every`]. Every
//! event also goes out as a webhook to the host's webhook receiver (an app subscribed
//! both ways), so events sent during an outage still arrive, and the input path delivers
//! each once. RTMS side: the simulator's chaos mode ([`RtmsChaos`]: failovers,
//! interruptions, media loss, ...) on every live stream, a round every
//! [`ChaosOptions::every`]. The client's heartbeat and silence timeout are scaled down so
//! a stall is noticed in seconds instead of 45 s; everything else keeps Zoom's timings.
//!
//! Lines in the live view, in one format:
//! ```text
//! chaos: event WebSocket closed with 1001
//! event WebSocket lost (server closed the connection (1001 "going away")); reconnecting in 0.42 s
//! event WebSocket back after 0.43 s (1 attempt)
//! chaos: RTMS failover -> stream 3f2a…
//! ```

use std::sync::Arc;
use std::time::Duration;

use zoomhost_protocol::Secret;
use zoomhost_sim::events::{ChaosRun, EventChaos, EventSim, SteadyStream};
use zoomhost_sim::rtms::{RtmsChaos, RtmsSim};
use zoomhost_sim::webhook::WebhookSender;
use zoomhost_zoom::events::{ConnectionState, EventStreamConfig};
use zoomhost_zoom::webhook::WebhookConfig;

/// The webhook secret token between the simulator and the dev host (not a secret of any
/// real app).
const DEV_WEBHOOK_SECRET: &str = "sim-webhook-secret";

use super::DevMonitor;
use crate::host::EventStreamWatch;

/// What `--chaos` turns on.
#[derive(Debug, Clone, PartialEq)]
pub struct ChaosOptions {
    /// Time between two event-side faults.
    pub every: Duration,
    /// Interval of the steady event stream.
    pub steady_every: Duration,
    /// Lifetime of the simulated OAuth tokens, seconds (the server closes each
    /// connection when its token expires).
    pub token_lifetime_s: u64,
}

impl ChaosOptions {
    /// A fault every `every`, 5 steady events a second, 60 s tokens.
    pub fn every(every: Duration) -> Self {
        Self {
            every,
            steady_every: Duration::from_millis(200),
            token_lifetime_s: 60,
        }
    }

    /// The client timings under chaos: heartbeat and silence timeout scaled down so a
    /// stall shows within seconds.
    pub fn tune_client(&self, ws: &mut EventStreamConfig) {
        ws.heartbeat = Duration::from_secs(1);
        ws.silence_timeout = Duration::from_secs(3);
    }

    /// The webhook receiver the dev host runs under chaos: loopback, a free port.
    pub fn webhook_config(&self) -> WebhookConfig {
        WebhookConfig {
            bind: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            secret: Secret::new(DEV_WEBHOOK_SECRET),
            ..WebhookConfig::default()
        }
    }

    fn stall(&self) -> Duration {
        Duration::from_secs(5)
    }

    fn oauth_down(&self) -> Duration {
        (self.every / 2).clamp(Duration::from_millis(200), Duration::from_secs(3))
    }
}

/// The running chaos; stops when dropped.
pub struct ChaosSession {
    _steady: SteadyStream,
    events: ChaosRun,
    rtms: Arc<RtmsSim>,
    rtms_notes: tokio::task::JoinHandle<()>,
}

impl ChaosSession {
    /// Starts the webhook copies (to `webhook_url`, the host's receiver), the steady
    /// stream, the event-side fault cycle and the RTMS chaos mode.
    pub fn start(
        options: &ChaosOptions,
        events: &EventSim,
        rtms: &Arc<RtmsSim>,
        webhook_url: Option<&str>,
        monitor: &Arc<DevMonitor>,
    ) -> Self {
        events.set_token_lifetime(options.token_lifetime_s);
        if let Some(url) = webhook_url {
            match WebhookSender::new(url, Secret::new(DEV_WEBHOOK_SECRET)) {
                Ok(sender) => events.mirror_to_webhook(Some(sender)),
                Err(e) => monitor.note(format!("chaos: no webhook copies ({e:#})")),
            }
        }
        let steady = events.steady_stream("meeting.participant_qos", options.steady_every);
        let notes = monitor.clone();
        let storm = EventChaos::storm(options.every, options.oauth_down(), options.stall());
        let run = events.start_chaos(storm, move |fault| notes.note(format!("chaos: {fault}")));
        rtms.set_chaos(Some(RtmsChaos {
            interval: options.every,
            ..RtmsChaos::default()
        }));
        let rtms_notes = tokio::spawn(note_rtms_chaos(rtms.clone(), monitor.clone()));
        monitor.note(format!(
            "chaos on: a fault every {:.1} s (event WebSocket: drop, close 1001, token expiry \
             with OAuth 500s, stall; RTMS: {}), {} steady events/s sent both as WebSocket \
             events and webhooks, {} s tokens",
            options.every.as_secs_f64(),
            RtmsChaos::default()
                .scenarios
                .iter()
                .map(|s| s.name())
                .collect::<Vec<_>>()
                .join(", "),
            (1.0 / options.steady_every.as_secs_f64()).round(),
            options.token_lifetime_s
        ));
        Self {
            _steady: steady,
            events: run,
            rtms: rtms.clone(),
            rtms_notes,
        }
    }

    /// Event-side faults injected so far.
    pub fn event_faults(&self) -> usize {
        self.events.injected().len()
    }

    /// RTMS chaos injections so far.
    pub fn rtms_injections(&self) -> usize {
        self.rtms.chaos_log().len()
    }
}

impl Drop for ChaosSession {
    fn drop(&mut self) {
        self.events.stop();
        self.rtms.set_chaos(None);
        self.rtms_notes.abort();
    }
}

/// Shows each RTMS chaos injection in the live view.
async fn note_rtms_chaos(rtms: Arc<RtmsSim>, monitor: Arc<DevMonitor>) {
    let mut shown = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let log = rtms.chaos_log();
        for injection in log.iter().skip(shown) {
            monitor.note(format!(
                "chaos: RTMS {} -> stream {}",
                injection.scenario.name(),
                short(&injection.stream_id)
            ));
        }
        shown = log.len();
    }
}

fn short(id: &str) -> String {
    if id.chars().count() > 8 {
        format!("{}…", id.chars().take(8).collect::<String>())
    } else {
        id.to_string()
    }
}

/// Shows the event WebSocket's outages and recoveries in the live view as they happen,
/// until the client stops.
pub async fn watch_event_stream(watch: EventStreamWatch, monitor: Arc<DevMonitor>) {
    let EventStreamWatch { mut state, stats } = watch;
    let mut connected_once = false;
    let mut outages_seen = 0;
    let mut in_outage = false;
    loop {
        let now = state.borrow_and_update().clone();
        match now {
            ConnectionState::Connected => {
                let snapshot = stats.snapshot();
                if snapshot.outages > outages_seen {
                    outages_seen = snapshot.outages;
                    if let Some(outage) = snapshot.last_outage {
                        monitor.note(format!(
                            "event WebSocket back after {:.2} s ({} attempt{})",
                            outage.duration.as_secs_f64(),
                            outage.attempts,
                            if outage.attempts == 1 { "" } else { "s" }
                        ));
                    }
                } else if !connected_once {
                    monitor.note("event WebSocket connected");
                }
                connected_once = true;
                in_outage = false;
            }
            ConnectionState::Reconnecting { delay, reason } => {
                let verb = if connected_once && !in_outage {
                    "lost"
                } else {
                    "attempt failed"
                };
                in_outage = connected_once;
                monitor.note(format!(
                    "event WebSocket {verb} ({reason}); reconnecting in {:.2} s",
                    delay.as_secs_f64()
                ));
            }
            ConnectionState::Stopped => return,
            ConnectionState::Idle | ConnectionState::Connecting => {}
        }
        if state.changed().await.is_err() {
            return;
        }
    }
}
