//! Chaos mode: Zoom's failure scenarios injected into every live stream, one after the
//! other, at an interval ([`RtmsChaos`], [`super::RtmsSim::set_chaos`]).
//!
//! Each round (every [`RtmsChaos::interval`]) every stream whose client is connected
//! gets the next scenario of the list, in turn per stream, each stream starting at its
//! own place in the cycle (from the seed and its id), so several streams see different
//! scenarios at the same time. A stream whose client is still recovering from the last
//! one (signaling not ready, a media socket missing), or whose last scenario is still
//! playing out (media held, a drop pending, keep-alives going unheard), is left alone
//! that round ([`super::SimStream::is_connected`]). Every injection
//! is logged ([`super::RtmsSim::chaos_log`]).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Weak;
use std::time::Duration;

use super::{Fault, Server, SocketKind};
use crate::util::lock;

/// One of Zoom's documented failure scenarios, as chaos mode injects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChaosScenario {
    /// The stream's server dies: sockets dropped, `rtms_started` re-announced with a
    /// second server's URLs ([`Fault::Failover`]).
    Failover,
    /// Signaling dropped (media with it), `rtms_interrupted` sent
    /// ([`Fault::DropSignaling`]).
    SignalingLoss,
    /// Media dropped, `EVENT_UPDATE` 7 on signaling ([`Fault::DropMedia`]).
    MediaLoss,
    /// The client's signaling keep-alive answers are lost: after three intervals, the
    /// signaling-loss reaction ([`Fault::MissKeepAlives`]).
    SignalingKeepAlive,
    /// The client's media keep-alive answers are lost: after three intervals, the
    /// media-loss reaction ([`Fault::MissKeepAlives`]).
    MediaKeepAlive,
    /// Media held back for [`RtmsChaos::hold`], then the buffered audio replayed with
    /// its original timestamps ([`Fault::HoldMedia`]).
    BufferedReplay,
}

impl ChaosScenario {
    /// Every scenario, in the default cycle order.
    pub const ALL: [ChaosScenario; 6] = [
        ChaosScenario::MediaLoss,
        ChaosScenario::SignalingLoss,
        ChaosScenario::Failover,
        ChaosScenario::BufferedReplay,
        ChaosScenario::MediaKeepAlive,
        ChaosScenario::SignalingKeepAlive,
    ];

    /// Its name on command lines (`media-loss`, `signaling-loss`, `failover`,
    /// `buffered-replay`, `media-keepalive`, `signaling-keepalive`).
    pub fn name(self) -> &'static str {
        match self {
            ChaosScenario::Failover => "failover",
            ChaosScenario::SignalingLoss => "signaling-loss",
            ChaosScenario::MediaLoss => "media-loss",
            ChaosScenario::SignalingKeepAlive => "signaling-keepalive",
            ChaosScenario::MediaKeepAlive => "media-keepalive",
            ChaosScenario::BufferedReplay => "buffered-replay",
        }
    }

    /// The fault that plays it (`hold`: how long [`ChaosScenario::BufferedReplay`] holds
    /// media back).
    pub fn fault(self, hold: Duration) -> Fault {
        match self {
            ChaosScenario::Failover => Fault::Failover,
            ChaosScenario::SignalingLoss => Fault::DropSignaling,
            ChaosScenario::MediaLoss => Fault::DropMedia,
            ChaosScenario::SignalingKeepAlive => Fault::MissKeepAlives(SocketKind::Signaling),
            ChaosScenario::MediaKeepAlive => Fault::MissKeepAlives(SocketKind::Media),
            ChaosScenario::BufferedReplay => Fault::HoldMedia(hold),
        }
    }
}

impl std::fmt::Display for ChaosScenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ChaosScenario {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<ChaosScenario> {
        let wanted = s.trim().to_ascii_lowercase().replace('_', "-");
        ChaosScenario::ALL
            .into_iter()
            .find(|c| c.name() == wanted)
            .ok_or_else(|| {
                let names: Vec<&str> = ChaosScenario::ALL.iter().map(|c| c.name()).collect();
                anyhow::anyhow!(
                    "unknown RTMS chaos scenario {s:?}; known: {}",
                    names.join(", ")
                )
            })
    }
}

/// Chaos mode's settings.
///
/// ```
/// use std::time::Duration;
/// use zoomhost_sim::rtms::{ChaosScenario, RtmsChaos};
///
/// let every = RtmsChaos::default(); // every scenario, one round every 20 s
/// assert_eq!(every.scenarios.len(), 6);
/// let some = RtmsChaos::parse("failover,media-loss").unwrap();
/// assert_eq!(some.scenarios, vec![ChaosScenario::Failover, ChaosScenario::MediaLoss]);
/// let fast = RtmsChaos { interval: Duration::from_millis(500), ..RtmsChaos::default() };
/// assert!(fast.interval < every.interval);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmsChaos {
    /// The scenarios, cycled through in this order (empty: chaos does nothing).
    pub scenarios: Vec<ChaosScenario>,
    /// Time between two rounds. With Zoom's keep-alive cadence (10 s, three misses) the
    /// keep-alive scenarios take 30 s to play out; rounds that come sooner skip a stream
    /// still recovering. Default 20 s.
    pub interval: Duration,
    /// Where each stream starts in the cycle (with its id). Default 0.
    pub seed: u64,
    /// How long [`ChaosScenario::BufferedReplay`] holds media back. Default 5 s.
    pub hold: Duration,
}

impl Default for RtmsChaos {
    fn default() -> Self {
        Self {
            scenarios: ChaosScenario::ALL.to_vec(),
            interval: Duration::from_secs(20),
            seed: 0,
            hold: Duration::from_secs(5),
        }
    }
}

impl RtmsChaos {
    /// The defaults with the scenarios of a comma-separated list of names (`all`, or
    /// empty, for every scenario), e.g. `failover,media-loss`.
    pub fn parse(list: &str) -> anyhow::Result<RtmsChaos> {
        let list = list.trim();
        let scenarios = if list.is_empty() || list.eq_ignore_ascii_case("all") {
            ChaosScenario::ALL.to_vec()
        } else {
            list.split(',')
                .map(ChaosScenario::from_str)
                .collect::<anyhow::Result<Vec<_>>>()?
        };
        Ok(RtmsChaos {
            scenarios,
            ..RtmsChaos::default()
        })
    }

    /// Where a stream starts in the cycle.
    fn offset(&self, stream_id: &str) -> u64 {
        // FNV-1a: stable across runs and builds.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ self.seed;
        for byte in stream_id.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash
    }
}

/// One injection of chaos mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChaosInjection {
    /// The stream it went into.
    pub stream_id: String,
    /// What was injected.
    pub scenario: ChaosScenario,
    /// The round (1 for the first).
    pub round: u64,
}

/// The chaos task: runs until the simulator is gone or chaos is replaced.
pub(super) async fn run(server: Weak<Server>, chaos: RtmsChaos) {
    tracing::info!(
        scenarios = ?chaos.scenarios.iter().map(|c| c.name()).collect::<Vec<_>>(),
        interval_ms = chaos.interval.as_millis() as u64,
        "RTMS sim: chaos mode on"
    );
    if chaos.scenarios.is_empty() {
        return;
    }
    let every = chaos.interval.max(Duration::from_millis(1));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let n = chaos.scenarios.len() as u64;
    // How many scenarios each stream got so far: the next is the one after.
    let mut played: HashMap<String, u64> = HashMap::new();
    for round in 1u64.. {
        ticker.tick().await;
        let Some(server) = server.upgrade() else {
            return;
        };
        for stream in server.live_streams() {
            let count = played.entry(stream.stream_id().to_string()).or_default();
            let index = chaos.offset(stream.stream_id()).wrapping_add(*count) % n;
            *count += 1;
            let scenario = chaos.scenarios[index as usize];
            tracing::info!(stream = %stream.stream_id(), %scenario, round, "RTMS sim: chaos");
            stream.inject(scenario.fault(chaos.hold));
            lock(&server.chaos_log).push(ChaosInjection {
                stream_id: stream.stream_id().to_string(),
                scenario,
                round,
            });
        }
    }
}
