//! Scenarios: a meeting timeline with faults and RTMS steps, played against the
//! simulator.

use crate::rtms::{self, RtmsSim, SimParticipant, SimStream, StreamSpec};
use anyhow::Context;
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::*;

/// A meeting timeline with faults, loaded from TOML or JSON.
///
/// ```toml
/// topic = "Weekly sync"
/// tag_ids = true
/// [[steps]]
/// at_ms = 0
/// kind = "event"
/// event = "meeting.started"
/// [[steps]]
/// at_ms = 500
/// kind = "drop"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The meeting topic.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Whether each payload carries a unique top-level `"id"` (default true).
    #[serde(default = "default_true")]
    pub tag_ids: bool,
    /// `server_urls` for `meeting.rtms_started`.
    #[serde(default)]
    pub rtms_server_urls: Option<String>,
    /// The timeline, in order.
    pub steps: Vec<Step>,
    /// Where relative paths (`rtms_start`'s `wav`) are resolved: the scenario file's
    /// folder when loaded from a file.
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
}

fn default_topic() -> String {
    "Weekly sync".to_string()
}

fn default_true() -> bool {
    true
}

/// One timeline entry: when (milliseconds after the start) and what.
#[derive(Debug, Clone, Deserialize)]
pub struct Step {
    /// Offset from the scenario start; a step never runs before the previous one.
    #[serde(default)]
    pub at_ms: u64,
    /// What happens.
    #[serde(flatten)]
    pub action: Action,
}

/// What a step does.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Push an event with a generated payload.
    Event {
        /// Zoom event name, e.g. `meeting.participant_joined`.
        event: String,
        /// Who joins or leaves (participant events).
        #[serde(default)]
        participant: Option<String>,
    },
    /// Drop the TCP connection without a close frame.
    Drop,
    /// Close with a WebSocket close code.
    Close {
        /// The close code.
        code: u16,
        /// The close reason.
        #[serde(default)]
        reason: String,
    },
    /// Invalidate every token and close the connection (1008).
    InvalidateToken,
    /// Make the next `requests` OAuth token requests fail.
    OauthOutage {
        /// How many requests fail.
        requests: usize,
        /// Status they get (default 503).
        #[serde(default = "default_outage_status")]
        status: u16,
    },
    /// Neither read nor write for `ms` (a heartbeat stall: the client must notice the
    /// silence).
    Stall {
        /// Stall length.
        ms: u64,
    },
    /// Expire the live connection's token and close the connection as Zoom does at
    /// expiry, with every OAuth token request answering `status` for `oauth_down_ms`.
    ExpireToken {
        /// How long the OAuth endpoint fails (default 0: not at all).
        #[serde(default)]
        oauth_down_ms: u64,
        /// Status of the failing requests (default 500).
        #[serde(default = "default_expiry_outage_status")]
        status: u16,
    },
    /// Every OAuth token request answers `status` for `ms`.
    OauthDown {
        /// Outage length.
        ms: u64,
        /// Status (default 500).
        #[serde(default = "default_expiry_outage_status")]
        status: u16,
    },
    /// Tokens issued from now on live `seconds` (short lifetimes: the server closes the
    /// connection at each expiry).
    TokenLifetime {
        /// Lifetime in seconds.
        seconds: u64,
    },
    /// Start pushing `event` every `every_ms` in the background (payload ids
    /// `steady-000001`, ...) until `steady_stop` or the end of the scenario.
    SteadyStart {
        /// Interval.
        every_ms: u64,
        /// Event name (default `meeting.participant_qos`).
        #[serde(default = "default_steady_event")]
        event: String,
    },
    /// Stop the steady stream.
    SteadyStop,
    /// Wait (up to `timeout_ms`) until a client is connected again.
    WaitConnected {
        /// Longest wait (default 10 s).
        #[serde(default = "default_wait_ms")]
        timeout_ms: u64,
    },
    /// Register an RTMS stream for the meeting in the attached [`RtmsSim`] and push
    /// `meeting.rtms_started` (flat payload: `meeting_uuid`, `rtms_stream_id`,
    /// `server_urls` = the signaling URL, `operator_id`, `account_id`, `meeting_id`).
    RtmsStart(RtmsStartStep),
    /// Run the current RTMS stream's stop sequence (if it still runs) and push
    /// `meeting.rtms_stopped` with `stop_reason`.
    RtmsStop {
        /// The stop reason (default 6, meeting ended).
        #[serde(default = "default_stop_reason")]
        stop_reason: u32,
    },
    /// Wait until the current RTMS stream's client is ready, or the stream is done.
    RtmsWait {
        /// What to wait for (default `done`).
        #[serde(default)]
        until: RtmsWaitFor,
        /// Longest wait (default 60 s).
        #[serde(default = "default_rtms_wait_ms")]
        timeout_ms: u64,
    },
}

/// What `rtms_wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RtmsWaitFor {
    /// The client sent `CLIENT_READY_ACK`.
    Ready,
    /// Every frame was sent and the stop sequence ran (or the stream was given up).
    #[default]
    Done,
}

/// The stream an `rtms_start` step registers (see [`StreamSpec`] for the meaning of
/// each field).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtmsStartStep {
    /// Who is in the stream: names (the meeting's people, with the user ids their
    /// participant events carry) or a count. Default: everyone the scenario has named so
    /// far, or two people.
    #[serde(default)]
    pub participants: Option<RtmsParticipants>,
    /// Audio frames per source (default 500: 10 s at 20 ms).
    #[serde(default = "default_rtms_frames")]
    pub frames: u32,
    /// `real_time` (default) or `fast`.
    #[serde(default)]
    pub pace: rtms::Pace,
    /// A transcript segment every N frames (0: none).
    #[serde(default)]
    pub transcript_every: u32,
    /// `as_requested` (default), `mixed` or `per_speaker`.
    #[serde(default)]
    pub data_opt: rtms::DataOpt,
    /// A 16-bit PCM WAV to stream instead of tones (relative to the scenario file).
    #[serde(default)]
    pub wav: Option<PathBuf>,
    /// `after_frames` (default: stop sequence when every frame was sent) or `hold`.
    #[serde(default)]
    pub end: rtms::End,
    /// Stop reason of `after_frames` (default 6).
    #[serde(default = "default_stop_reason")]
    pub stop_reason: u32,
    /// Re-send the last N frames after a resumed media handshake.
    #[serde(default)]
    pub resend_on_resume: u32,
    /// Video messages to interleave.
    #[serde(default)]
    pub video: u32,
    /// Share messages to interleave.
    #[serde(default)]
    pub share: u32,
    /// Chat messages to interleave.
    #[serde(default)]
    pub chat: u32,
    /// Fields merged over the confirmed audio params, e.g. `{ sample_rate = 3 }`.
    #[serde(default)]
    pub confirm_audio: Option<Value>,
    /// Faults after given audio frames.
    #[serde(default)]
    pub faults: Vec<RtmsFaultStep>,
    /// Record every sent item (default true).
    #[serde(default = "default_true")]
    pub record: bool,
    /// Whose camera is on, and when (individual video, events 8/9); default: every
    /// participant's, all the time.
    #[serde(default)]
    pub cameras: Option<Vec<RtmsCamera>>,
}

/// One entry of `rtms_start`'s `cameras`: `{ participant = "Ada Lovelace", from_frame = 0,
/// until_frame = 250 }` (frames as in `faults`; no `until_frame`: on until the end).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtmsCamera {
    /// Whose camera: a name of the stream's participants.
    pub participant: String,
    /// The first frame with the camera on (default 0).
    #[serde(default)]
    pub from_frame: u32,
    /// The first frame with it off again.
    #[serde(default)]
    pub until_frame: Option<u32>,
}

/// `participants` of `rtms_start`: names, or how many.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RtmsParticipants {
    /// That many people (canned names).
    Count(u32),
    /// These people.
    Names(Vec<String>),
}

/// One fault of `rtms_start`: `{ after_frame = N, fault = "drop_media" }`.
#[derive(Debug, Clone, Deserialize)]
pub struct RtmsFaultStep {
    /// The audio frame (0-based) after which it fires.
    pub after_frame: u32,
    /// What happens.
    #[serde(flatten)]
    pub fault: RtmsFaultSpec,
}

/// The faults of [`rtms::Fault`], as scenario files write them.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case", deny_unknown_fields)]
pub enum RtmsFaultSpec {
    /// Abrupt drop of the media sockets.
    DropMedia,
    /// Abrupt drop of the signaling socket.
    DropSignaling,
    /// Close the media sockets with `code` (default 1000).
    CloseMedia {
        /// Close code.
        #[serde(default = "default_close_code")]
        code: u16,
    },
    /// Close the signaling socket with `code` (default 1000).
    CloseSignaling {
        /// Close code.
        #[serde(default = "default_close_code")]
        code: u16,
    },
    /// Refuse the next handshake with `status`.
    Reject {
        /// The status code.
        status: u32,
    },
    /// Neither read nor write for `ms`.
    Stall {
        /// Stall length.
        ms: u64,
    },
    /// Paused for `ms`, then resumed.
    Pause {
        /// Pause length.
        ms: u64,
    },
    /// Stop sequence with `reason`.
    Stop {
        /// Stop reason.
        reason: u32,
    },
    /// The stream's server dies: every socket dropped, the stream moves to a second
    /// server, and `rtms_started` is announced again with its URL and a newer `event_ts`.
    Failover,
    /// The server stops hearing the client's keep-alive answers on `socket`
    /// (`signaling` or `media`), so it drops that socket after the allowed misses.
    MissKeepAlives {
        /// Which sockets.
        socket: RtmsSocket,
    },
    /// Nothing is written to the media sockets for `ms`; audio produced meanwhile is
    /// replayed in a burst afterwards (video is dropped).
    HoldMedia {
        /// How long.
        ms: u64,
    },
}

/// `socket` of a `miss_keep_alives` fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RtmsSocket {
    /// The signaling socket.
    Signaling,
    /// Every media socket.
    Media,
}

impl From<&RtmsFaultSpec> for rtms::Fault {
    fn from(spec: &RtmsFaultSpec) -> Self {
        match *spec {
            RtmsFaultSpec::DropMedia => rtms::Fault::DropMedia,
            RtmsFaultSpec::DropSignaling => rtms::Fault::DropSignaling,
            RtmsFaultSpec::CloseMedia { code } => rtms::Fault::CloseMedia(code),
            RtmsFaultSpec::CloseSignaling { code } => rtms::Fault::CloseSignaling(code),
            RtmsFaultSpec::Reject { status } => rtms::Fault::Reject(status),
            RtmsFaultSpec::Stall { ms } => rtms::Fault::Stall(Duration::from_millis(ms)),
            RtmsFaultSpec::Pause { ms } => rtms::Fault::Pause(Duration::from_millis(ms)),
            RtmsFaultSpec::Stop { reason } => rtms::Fault::Stop(reason),
            RtmsFaultSpec::Failover => rtms::Fault::Failover,
            RtmsFaultSpec::MissKeepAlives { socket } => rtms::Fault::MissKeepAlives(match socket {
                RtmsSocket::Signaling => rtms::SocketKind::Signaling,
                RtmsSocket::Media => rtms::SocketKind::Media,
            }),
            RtmsFaultSpec::HoldMedia { ms } => rtms::Fault::HoldMedia(Duration::from_millis(ms)),
        }
    }
}

fn default_stop_reason() -> u32 {
    6
}

fn default_rtms_wait_ms() -> u64 {
    60_000
}

fn default_rtms_frames() -> u32 {
    500
}

fn default_close_code() -> u16 {
    1000
}

/// Names for `participants = N`.
const CANNED_NAMES: [&str; 8] = [
    "Ada Lovelace",
    "Grace Hopper",
    "Alan Turing",
    "Katherine Johnson",
    "Edsger Dijkstra",
    "Barbara Liskov",
    "Donald Knuth",
    "Margaret Hamilton",
];

fn default_expiry_outage_status() -> u16 {
    500
}

fn default_steady_event() -> String {
    "meeting.participant_qos".to_string()
}

fn default_outage_status() -> u16 {
    503
}

fn default_wait_ms() -> u64 {
    10_000
}

/// What a scenario run did.
#[derive(Debug, Clone, Default)]
pub struct ScenarioReport {
    /// Events written to a connected client.
    pub sent: Vec<SentEvent>,
    /// Events pushed while nobody was connected.
    pub missed: Vec<SentEvent>,
    /// Fault steps run.
    pub faults: usize,
    /// RTMS streams registered by `rtms_start` steps, in order.
    pub rtms_streams: Vec<Arc<SimStream>>,
}

/// The RTMS side of a scenario run.
struct RtmsRun<'a> {
    sim: Option<&'a RtmsSim>,
    /// The steady stream of a `steady_start` step (event side, kept here with the
    /// run's other state).
    steady: Option<SteadyStream>,
    current: Option<Arc<SimStream>>,
    started: Vec<Arc<SimStream>>,
}

impl Scenario {
    /// Parses TOML, or JSON when the text starts with `{`.
    pub fn parse(text: &str) -> anyhow::Result<Scenario> {
        if text.trim_start().starts_with('{') {
            serde_json::from_str(text).context("scenario JSON")
        } else {
            toml::from_str(text).context("scenario TOML")
        }
    }

    /// Loads a scenario file (`.json` or TOML).
    pub fn load(path: &Path) -> anyhow::Result<Scenario> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading scenario {}", path.display()))?;
        let mut scenario =
            Self::parse(&text).with_context(|| format!("scenario {}", path.display()))?;
        scenario.base_dir = path.parent().map(Path::to_path_buf);
        Ok(scenario)
    }

    /// Whether a step needs an [`RtmsSim`] ([`Scenario::run_with`]).
    pub fn uses_rtms(&self) -> bool {
        self.steps.iter().any(|s| {
            matches!(
                s.action,
                Action::RtmsStart(_) | Action::RtmsStop { .. } | Action::RtmsWait { .. }
            )
        })
    }

    /// Plays the timeline against `sim` (no RTMS: `rtms_*` steps fail).
    pub async fn run(&self, sim: &EventSim) -> anyhow::Result<ScenarioReport> {
        self.run_with(sim, None).await
    }

    /// Plays the timeline against `sim`, with `rtms` serving the `rtms_*` steps.
    pub async fn run_with(
        &self,
        sim: &EventSim,
        rtms: Option<&RtmsSim>,
    ) -> anyhow::Result<ScenarioReport> {
        let mut rtms = RtmsRun {
            sim: rtms,
            steady: None,
            current: None,
            started: Vec::new(),
        };
        let mut meeting = MeetingGen::new(&self.topic);
        if let Some(urls) = &self.rtms_server_urls {
            meeting.rtms_server_urls.clone_from(urls);
        }
        let start = tokio::time::Instant::now();
        let mut report = ScenarioReport::default();
        let mut sent_before = sim.sent().len();
        let mut missed_before = sim.missed().len();
        for (n, step) in self.steps.iter().enumerate() {
            tokio::time::sleep_until(start + Duration::from_millis(step.at_ms)).await;
            if self
                .play(sim, &mut meeting, &mut rtms, &step.action, n)
                .await?
            {
                report.faults += 1;
            }
        }
        // A steady stream still running stops with the scenario.
        if let Some(steady) = rtms.steady.take() {
            steady.stop().await;
        }
        report.rtms_streams = rtms.started;
        let sent = sim.sent();
        let missed = sim.missed();
        sent_before = sent_before.min(sent.len());
        missed_before = missed_before.min(missed.len());
        report.sent = sent[sent_before..].to_vec();
        report.missed = missed[missed_before..].to_vec();
        Ok(report)
    }

    /// Runs one step; true if it was a fault.
    async fn play(
        &self,
        sim: &EventSim,
        meeting: &mut MeetingGen,
        rtms: &mut RtmsRun<'_>,
        action: &Action,
        n: usize,
    ) -> anyhow::Result<bool> {
        match action {
            Action::Event { event, participant } => {
                let mut payload = meeting.payload(event, participant.as_deref());
                self.tag(&mut payload, n);
                sim.push_event(event, payload).await;
                return Ok(false);
            }
            Action::Drop => sim.drop_connection().await,
            Action::Close { code, reason } => sim.close_connection(*code, reason).await,
            Action::InvalidateToken => sim.invalidate_token().await,
            Action::OauthOutage { requests, status } => sim.oauth_outage(*requests, *status),
            Action::Stall { ms } => sim.stall(Duration::from_millis(*ms)),
            Action::ExpireToken {
                oauth_down_ms,
                status,
            } => {
                if *oauth_down_ms > 0 {
                    sim.oauth_outage_for(Duration::from_millis(*oauth_down_ms), *status);
                }
                sim.expire_token().await;
            }
            Action::OauthDown { ms, status } => {
                sim.oauth_outage_for(Duration::from_millis(*ms), *status)
            }
            Action::TokenLifetime { seconds } => {
                sim.set_token_lifetime(*seconds);
                return Ok(false);
            }
            Action::SteadyStart { every_ms, event } => {
                rtms.steady = Some(sim.steady_stream(event, Duration::from_millis(*every_ms)));
                return Ok(false);
            }
            Action::SteadyStop => {
                if let Some(steady) = rtms.steady.take() {
                    steady.stop().await;
                }
                return Ok(false);
            }
            Action::WaitConnected { timeout_ms } => {
                let timeout = Duration::from_millis(*timeout_ms);
                anyhow::ensure!(
                    sim.wait_connected(timeout).await,
                    "step {}: no client connected within {timeout_ms} ms",
                    n + 1
                );
                return Ok(false);
            }
            Action::RtmsStart(start) => {
                let Some(rtms_sim) = rtms.sim else {
                    anyhow::bail!(
                        "step {}: rtms_start needs an RTMS simulator (Scenario::run_with)",
                        n + 1
                    );
                };
                let stream = self
                    .rtms_start(rtms_sim, meeting, start)
                    .with_context(|| format!("step {}: rtms_start", n + 1))?;
                let mut payload = meeting.payload("meeting.rtms_started", None);
                self.tag(&mut payload, n);
                sim.push_event("meeting.rtms_started", payload).await;
                rtms.current = Some(stream.clone());
                rtms.started.push(stream);
                return Ok(false);
            }
            Action::RtmsStop { stop_reason } => {
                let stream = rtms
                    .current
                    .as_ref()
                    .with_context(|| format!("step {}: rtms_stop before any rtms_start", n + 1))?;
                stream.stop(*stop_reason).await;
                let mut payload = meeting.payload("meeting.rtms_stopped", None);
                payload["stop_reason"] = json!(stop_reason);
                self.tag(&mut payload, n);
                sim.push_event("meeting.rtms_stopped", payload).await;
                return Ok(false);
            }
            Action::RtmsWait { until, timeout_ms } => {
                let stream = rtms
                    .current
                    .as_ref()
                    .with_context(|| format!("step {}: rtms_wait before any rtms_start", n + 1))?;
                let timeout = Duration::from_millis(*timeout_ms);
                let reached = match until {
                    RtmsWaitFor::Ready => stream.wait_ready(timeout).await,
                    RtmsWaitFor::Done => stream.wait_done(timeout).await,
                };
                anyhow::ensure!(
                    reached,
                    "step {}: RTMS stream {} not {until:?} within {timeout_ms} ms",
                    n + 1,
                    stream.stream_id()
                );
                return Ok(false);
            }
        }
        tracing::info!("event sim: fault {action:?}");
        Ok(true)
    }

    fn tag(&self, payload: &mut Value, n: usize) {
        if self.tag_ids {
            payload["id"] = json!(format!("evt-{:04}", n + 1));
        }
    }

    /// Registers the stream of an `rtms_start` step for the meeting; the meeting's
    /// `rtms_*` payloads then name it.
    fn rtms_start(
        &self,
        rtms: &RtmsSim,
        meeting: &mut MeetingGen,
        start: &RtmsStartStep,
    ) -> anyhow::Result<Arc<SimStream>> {
        if meeting.rtms_started {
            meeting.rtms_stream_id = random_token(32).to_lowercase();
        }
        meeting.rtms_started = true;
        meeting.rtms_server_urls = rtms.signaling_url();
        let names: Vec<String> = match &start.participants {
            Some(RtmsParticipants::Names(names)) => names.clone(),
            Some(RtmsParticipants::Count(count)) => (0..*count as usize)
                .map(|i| match CANNED_NAMES.get(i) {
                    Some(name) => name.to_string(),
                    None => format!("Participant {}", i + 1),
                })
                .collect(),
            None => {
                let mut known: Vec<String> = meeting.participants.keys().cloned().collect();
                known.sort();
                if known.is_empty() {
                    known = CANNED_NAMES[..2].iter().map(|s| s.to_string()).collect();
                }
                known
            }
        };
        let participants: Vec<SimParticipant> = names
            .iter()
            .map(|name| {
                let who = meeting.participant(name);
                let user_id = who["user_id"]
                    .as_str()
                    .and_then(|id| id.parse().ok())
                    .unwrap_or(16_000_000);
                SimParticipant::new(user_id, name.clone())
            })
            .collect();
        let cameras = match &start.cameras {
            None => None,
            Some(cameras) => Some(
                cameras
                    .iter()
                    .map(|camera| {
                        let who = participants
                            .iter()
                            .find(|p| p.user_name == camera.participant)
                            .with_context(|| {
                                format!(
                                    "cameras: {:?} is not one of the stream's participants ({})",
                                    camera.participant,
                                    names.join(", ")
                                )
                            })?;
                        Ok(rtms::CameraOn {
                            user_id: who.user_id,
                            from_frame: camera.from_frame,
                            until_frame: camera.until_frame,
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?,
            ),
        };
        let audio = match &start.wav {
            Some(path) => {
                let path = match &self.base_dir {
                    Some(dir) if path.is_relative() => dir.join(path),
                    _ => path.clone(),
                };
                rtms::AudioSource::Wav(path)
            }
            None => rtms::AudioSource::Tone,
        };
        let spec = StreamSpec {
            meeting_uuid: meeting.uuid.clone(),
            stream_id: meeting.rtms_stream_id.clone(),
            participants,
            frames: start.frames,
            pace: start.pace,
            audio,
            data_opt: start.data_opt,
            transcript_every: start.transcript_every,
            confirm_audio: start.confirm_audio.clone(),
            faults: start
                .faults
                .iter()
                .map(|f| (f.after_frame, (&f.fault).into()))
                .collect(),
            resend_on_resume: start.resend_on_resume,
            end: start.end,
            stop_reason: start.stop_reason,
            extra: rtms::ExtraMedia {
                video: start.video,
                share: start.share,
                chat: start.chat,
            },
            record: start.record,
            cameras,
            ..StreamSpec::default()
        };
        rtms.try_add_stream(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The faults of the `rtms_start` step of `toml`, as the stream gets them.
    fn faults_of(toml: &str) -> Vec<(u32, rtms::Fault)> {
        let scenario = Scenario::parse(toml).expect("scenario");
        let Action::RtmsStart(start) = &scenario.steps[0].action else {
            panic!("rtms_start");
        };
        start
            .faults
            .iter()
            .map(|f| (f.after_frame, (&f.fault).into()))
            .collect()
    }

    #[test]
    fn every_rtms_fault_has_a_step_syntax() {
        let faults = faults_of(
            r#"
            [[steps]]
            kind = "rtms_start"
            faults = [{ after_frame = 10, fault = "failover" },
                      { after_frame = 20, fault = "miss_keep_alives", socket = "signaling" },
                      { after_frame = 30, fault = "miss_keep_alives", socket = "media" },
                      { after_frame = 40, fault = "hold_media", ms = 750 },
                      { after_frame = 50, fault = "drop_media" },
                      { after_frame = 60, fault = "drop_signaling" },
                      { after_frame = 70, fault = "close_signaling", code = 1001 },
                      { after_frame = 80, fault = "pause", ms = 5 },
                      { after_frame = 90, fault = "stop", reason = 24 }]
            "#,
        );
        use rtms::{Fault, SocketKind};
        assert_eq!(
            faults,
            vec![
                (10, Fault::Failover),
                (20, Fault::MissKeepAlives(SocketKind::Signaling)),
                (30, Fault::MissKeepAlives(SocketKind::Media)),
                (40, Fault::HoldMedia(Duration::from_millis(750))),
                (50, Fault::DropMedia),
                (60, Fault::DropSignaling),
                (70, Fault::CloseSignaling(1001)),
                (80, Fault::Pause(Duration::from_millis(5))),
                (90, Fault::Stop(24)),
            ]
        );
    }

    #[test]
    fn malformed_rtms_faults_are_refused() {
        for bad in [
            // No socket, an unknown socket, no duration, a misspelled kind.
            r#"{ after_frame = 1, fault = "miss_keep_alives" }"#,
            r#"{ after_frame = 1, fault = "miss_keep_alives", socket = "audio" }"#,
            r#"{ after_frame = 1, fault = "hold_media" }"#,
            r#"{ after_frame = 1, fault = "fail_over" }"#,
        ] {
            let toml = format!("[[steps]]\nkind = \"rtms_start\"\nfaults = [{bad}]\n");
            assert!(Scenario::parse(&toml).is_err(), "accepted: {bad}");
        }
    }

    /// Joins `stream` (signaling, audio, ready ack) and reads every socket until it ends.
    async fn join(rtms: &RtmsSim, stream: &SimStream) -> Vec<tokio::task::JoinHandle<()>> {
        use crate::rtms::tests as client;
        let (mut sig, reply) = client::signaling(rtms, stream, false).await;
        let url = client::url_of(&reply, "audio");
        let params = json!({"audio": client::audio_params()});
        let (audio, _) = client::media(&url, rtms, stream, 1, params, false).await;
        sig.send(json!({"msg_type": 7})).await;
        [sig, audio]
            .map(|peer| {
                tokio::spawn(async move {
                    peer.drain().await;
                })
            })
            .into()
    }

    #[tokio::test]
    async fn a_scenario_injects_a_failover_and_missed_keep_alives() {
        use crate::rtms::tests as client;
        let events = EventSim::start(
            EventSimConfig::default(),
            Arc::new(TokenCheck(|t: &str| t == "tok")),
        )
        .await
        .expect("event sim");
        let rtms = client::sim(|c| c.keepalive_interval = Duration::from_millis(20)).await;
        let mut notices = rtms.notices();
        let scenario = Scenario::parse(
            r#"
            [[steps]]
            kind = "rtms_start"
            frames = 20
            pace = "fast"
            end = "hold"
            faults = [{ after_frame = 3, fault = "failover" }]
            [[steps]]
            kind = "rtms_start"
            frames = 20
            pace = "fast"
            end = "hold"
            faults = [{ after_frame = 3, fault = "miss_keep_alives", socket = "signaling" }]
            "#,
        )
        .expect("scenario");
        let report = scenario
            .run_with(&events, Some(&rtms))
            .await
            .expect("the scenario plays");
        let [failing_over, unheard] = &report.rtms_streams[..] else {
            panic!("two streams: {:?}", report.rtms_streams);
        };

        let readers = join(&rtms, failing_over).await;
        for reader in readers {
            reader.await.expect("reader");
        }
        let stats = failing_over.stats();
        assert_eq!(
            (stats.failovers, failing_over.generation()),
            (1, 1),
            "{stats:?}"
        );
        let announced = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let notice = notices.recv().await.expect("notices");
                if notice.name == "meeting.rtms_started" {
                    return notice;
                }
            }
        })
        .await
        .expect("rtms_started again");
        assert_eq!(
            announced.payload["server_urls"],
            failing_over.signaling_url()
        );

        let readers = join(&rtms, unheard).await;
        for reader in readers {
            reader.await.expect("reader");
        }
        let stats = unheard.stats();
        assert_eq!(
            (stats.dropped_for_keepalive, stats.signaling_interruptions),
            (1, 1),
            "{stats:?}"
        );
        for stream in [failing_over, unheard] {
            stream.stop(6).await;
        }
    }

    #[tokio::test]
    async fn cameras_name_participants() {
        let rtms = RtmsSim::start(rtms::RtmsSimConfig::default())
            .await
            .expect("RTMS sim");
        let scenario = Scenario::parse(
            r#"
            [[steps]]
            kind = "rtms_start"
            participants = ["Ada Lovelace", "Grace Hopper"]
            end = "hold"
            cameras = [{ participant = "Grace Hopper", from_frame = 5, until_frame = 50 }]
            "#,
        )
        .expect("scenario");
        let Action::RtmsStart(start) = &scenario.steps[0].action else {
            panic!("rtms_start");
        };
        let mut meeting = MeetingGen::new("Cameras");
        let stream = scenario
            .rtms_start(&rtms, &mut meeting, start)
            .expect("stream");
        let grace = stream.participants()[1].user_id;
        assert_eq!(stream.cameras(), [rtms::CameraOn::between(grace, 5, 50)]);
        // A name the stream does not have is an error that names it.
        let scenario = Scenario::parse(
            r#"
            [[steps]]
            kind = "rtms_start"
            participants = ["Ada Lovelace"]
            cameras = [{ participant = "Alan Turing" }]
            "#,
        )
        .expect("scenario");
        let Action::RtmsStart(start) = &scenario.steps[0].action else {
            panic!("rtms_start");
        };
        let error = scenario
            .rtms_start(&rtms, &mut meeting, start)
            .expect_err("unknown participant");
        assert!(format!("{error:#}").contains("Alan Turing"), "{error:#}");
    }
}
