//! Zoom's official RTMS SDK (PyPI `rtms`, the Python binding of Zoom's C SDK) against the
//! simulator: a normal stream and each of Zoom's failure scenarios, every audio frame
//! compared byte for byte (SHA-256), with its timestamp and user, in order, with what the
//! simulator recorded as sent. This keeps the simulator honest: where the SDK and the
//! simulator disagree, the simulator is wrong.
//!
//! The SDK is installed by the test into a venv under `target/rtms-sdk-venv`
//! (`python3 -m venv`, then `pip install rtms==1.1.0`; reused when present). It exists
//! for Linux x86-64 and CPython 3.10 to 3.13. Where it cannot be installed the tests print
//! why and pass, unless `ZOOMHOST_REQUIRE_RTMS_SDK=1` (CI sets it), which makes that a
//! failure.
//!
//! What the SDK does in each scenario (measured with v1.1.0):
//! - media socket dropped (or three missed media keep-alives): it closes signaling with
//!   1000 and rejoins from the signaling handshake on, about 1 s later; the simulator
//!   treats that close as a signaling loss (`rtms_interrupted`) and the rejoin gets the
//!   audio buffered meanwhile;
//! - signaling dropped (or three missed signaling keep-alives): it rejoins the same URL;
//! - server failover: it keeps retrying the dead server's URL, so the app must act on the
//!   re-announced `rtms_started`: the script leaves and joins the new `server_urls`, as an
//!   app on Zoom's SDK would;
//! - media held back and replayed: nothing to do, the burst arrives in order;
//! - chaos mode (every scenario in turn on the live stream): all of the above, in a row.
//!
//! Two simulator behaviours come from this test: a client's close 1000 on signaling is a
//! signaling loss, not the end of the stream (the SDK's rejoin depends on it), and media
//! stops for a short flush grace before the simulator drops sockets or ends a stream (the
//! SDK tears its media socket down on a signaling event without reading what is left).
//!
//! The script is `tests/rtms_sdk/join.py`; the SDK's own logs go to
//! `target/rtms-sdk-runs/<test>/logs`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use zoomhost_sim::rtms::{
    ChaosScenario, End, Fault, FrameFate, Pace, Product, RtmsChaos, SimParticipant, SimStream,
    SimStreamStats, SocketKind, StreamSpec,
};

use crate::support::{rtms_sim, workspace};

/// The SDK release the test installs.
const SDK: &str = "rtms==1.1.0";
const CLIENT_ID: &str = "sdk-test-client";
const SECRET: &str = "sdk-test-secret";
/// Audio frames per participant (20 ms each).
const FRAMES: u32 = 150;
/// Frames of the run with two keep-alive faults, each followed by a rejoin.
const LONG: u32 = 500;
/// The fault fires after this frame.
const FAULT_AT: u32 = 50;
/// Hang guard: a run takes a few seconds.
const HANG: Duration = Duration::from_secs(90);

/// Why the SDK is not available, or the venv's python.
fn sdk_python() -> &'static Result<PathBuf, String> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PYTHON.get_or_init(install_sdk)
}

/// Creates the venv and installs the SDK into it, unless it is there already.
fn install_sdk() -> Result<PathBuf, String> {
    if !(cfg!(target_os = "linux") && cfg!(target_arch = "x86_64")) {
        return Err("Zoom's RTMS SDK for Python ships for Linux x86-64 only".into());
    }
    let venv = workspace().join("target/rtms-sdk-venv");
    let python = venv.join("bin/python");
    let has_sdk = |python: &Path| {
        std::process::Command::new(python)
            .args(["-c", "import rtms"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if python.exists() && has_sdk(&python) {
        return Ok(python);
    }
    let run = |program: &Path, args: &[&str]| -> Result<(), String> {
        let output = std::process::Command::new(program)
            .args(args)
            .output()
            .map_err(|e| format!("running {}: {e}", program.display()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`{} {}` failed ({}): {}{}",
                program.display(),
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    };
    let venv_arg = venv.to_string_lossy().into_owned();
    run(Path::new("python3"), &["-m", "venv", &venv_arg])?;
    run(
        &python,
        &[
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            SDK,
        ],
    )?;
    if has_sdk(&python) {
        Ok(python)
    } else {
        Err(format!(
            "{SDK} installed into {} but `import rtms` fails",
            venv.display()
        ))
    }
}

/// The venv's python, or `None` (after saying why) when the SDK is unavailable and not
/// required.
fn python_or_skip(test: &str) -> Option<PathBuf> {
    match sdk_python() {
        Ok(python) => Some(python.clone()),
        Err(why) => {
            let required = std::env::var("ZOOMHOST_REQUIRE_RTMS_SDK").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "ZOOMHOST_REQUIRE_RTMS_SDK=1 but Zoom's RTMS SDK is unavailable: {why}"
            );
            eprintln!("SKIPPED {test}: Zoom's RTMS SDK is unavailable ({why})");
            None
        }
    }
}

/// One audio frame as the SDK handed it to the app.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    sha256: String,
    ts: u64,
    user_id: u64,
}

/// The script, running.
struct SdkClient {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<Value>,
    frames: Vec<Got>,
    interruptions: u32,
    logs: PathBuf,
}

impl SdkClient {
    async fn join(python: &Path, test: &str, stream: &SimStream, id_key: &str) -> SdkClient {
        let run_dir = workspace().join("target/rtms-sdk-runs").join(test);
        let _ = std::fs::remove_dir_all(&run_dir);
        let logs = run_dir.join("logs");
        std::fs::create_dir_all(&logs).expect("run folder");
        let config = json!({
            "server_urls": stream.signaling_url(),
            "id_key": id_key,
            "id": stream.meeting_uuid(),
            "rtms_stream_id": stream.stream_id(),
            "client": CLIENT_ID,
            "secret": SECRET,
        });
        let config_path = run_dir.join("config.json");
        std::fs::write(&config_path, config.to_string()).expect("config");
        let script = workspace().join("tests/rtms_sdk/join.py");
        let mut child = Command::new(python)
            .arg(&script)
            .arg(&config_path)
            .current_dir(&run_dir)
            .env("ZM_RTMS_LOG_LEVEL", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the SDK script");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                    Err(_) => eprintln!("SDK script: {line}"),
                }
            }
        });
        SdkClient {
            child,
            stdin,
            lines,
            frames: Vec::new(),
            interruptions: 0,
            logs,
        }
    }

    async fn command(&mut self, command: Value) {
        let line = format!("{command}\n");
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("a command to the SDK script");
        self.stdin.flush().await.expect("flush");
    }

    /// Reads the script's output until `done` holds (checked after every line and every
    /// 20 ms), acting on the simulator's re-announced `rtms_started` as an app would
    /// (rejoin its URL).
    async fn pump_until(
        &mut self,
        notices: &mut Notices,
        mut done: impl FnMut(&SdkClient) -> bool,
    ) {
        let logs = self.logs.display().to_string();
        let wait = async {
            while !done(self) {
                tokio::select! {
                    line = self.lines.recv() => {
                        let Some(v) = line else {
                            panic!("the SDK script ended after {} frames (SDK logs: {logs})", self.frames.len());
                        };
                        if let Some(error) = v.get("error") {
                            panic!("the SDK script failed: {error} (SDK logs: {logs})");
                        }
                        if v.get("media_interrupted").is_some() {
                            self.interruptions += 1;
                        }
                        if let (Some(sha256), Some(ts), Some(user_id)) =
                            (v["sha256"].as_str(), v["ts"].as_u64(), v["user_id"].as_u64())
                        {
                            self.frames.push(Got { sha256: sha256.to_string(), ts, user_id });
                        }
                    }
                    started = notices.recv() => {
                        if let Some(url) = started {
                            self.command(json!({"cmd": "rejoin", "server_urls": url})).await;
                        }
                    }
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
        };
        if tokio::time::timeout(HANG, wait).await.is_err() {
            panic!(
                "the SDK received {} frames and then nothing that ended the wait (SDK logs: {logs})",
                self.frames.len()
            );
        }
    }

    async fn quit(mut self) {
        self.command(json!({"cmd": "quit"})).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// The `server_urls` of every `*.rtms_started` the simulator re-announces (failover).
struct Notices {
    rx: tokio::sync::broadcast::Receiver<zoomhost_sim::rtms::SimNotice>,
}

impl Notices {
    async fn recv(&mut self) -> Option<String> {
        loop {
            match self.rx.recv().await {
                Ok(n) if n.name.ends_with("rtms_started") => {
                    return n.payload["server_urls"].as_str().map(str::to_string)
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => std::future::pending::<()>().await,
            }
        }
    }
}

fn hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How a run is set up and when it ends.
struct Setup {
    /// Audio frames per speaker.
    frames: u32,
    /// The keep-alive interval: long enough that a loaded machine never misses three by
    /// accident, short where keep-alives are the scenario.
    keepalive: Duration,
    /// Chaos mode from the moment the SDK is in, until it injected this many times.
    chaos: Option<(RtmsChaos, usize)>,
}

impl Setup {
    /// `FRAMES` frames, keep-alives every 2 s, no chaos.
    fn plain() -> Setup {
        Setup {
            frames: FRAMES,
            keepalive: Duration::from_secs(2),
            chaos: None,
        }
    }
}

/// What a run saw besides the frames.
struct Outcome {
    stats: SimStreamStats,
    /// `EVENT_UPDATE` 7 callbacks the SDK made.
    sdk_interruptions: u32,
    /// What chaos mode injected.
    chaos: Vec<ChaosScenario>,
}

/// Streams `FRAMES` real-time frames per speaker of two speakers to the SDK with `faults`,
/// and checks the SDK received exactly what the simulator sent; `None` when the SDK is
/// unavailable (and not required).
async fn run(
    test: &str,
    product: Product,
    id_key: &str,
    faults: Vec<(u32, Fault)>,
) -> Option<Outcome> {
    run_with(test, product, id_key, faults, Setup::plain()).await
}

/// [`run`] as `setup` says. Without chaos it ends when the SDK has every frame; with
/// chaos, once chaos injected its count and the SDK is back: the stream is stopped then
/// and the SDK must have every frame that was sent.
async fn run_with(
    test: &str,
    product: Product,
    id_key: &str,
    faults: Vec<(u32, Fault)>,
    setup: Setup,
) -> Option<Outcome> {
    let python = python_or_skip(test)?;
    let Setup {
        frames,
        keepalive,
        chaos,
    } = setup;
    let sim = rtms_sim(CLIENT_ID, SECRET, keepalive).await;
    let mut notices = Notices { rx: sim.notices() };
    let stream = sim.add_stream(StreamSpec {
        product,
        participants: vec![
            SimParticipant::new(16_778_240, "Ada Lovelace"),
            SimParticipant::new(16_779_264, "Grace Hopper"),
        ],
        frames,
        pace: Pace::RealTime,
        faults,
        end: End::Hold,
        ..StreamSpec::default()
    });
    let mut sdk = SdkClient::join(&python, test, &stream, id_key).await;
    // The SDK asks for per-speaker audio: two frames per 20 ms.
    let mut expected = frames as usize * 2;
    if let Some((chaos, injections)) = chaos {
        sdk.pump_until(&mut notices, |_| stream.is_connected())
            .await;
        sim.set_chaos(Some(chaos));
        sdk.pump_until(&mut notices, |_| sim.chaos_log().len() >= injections)
            .await;
        sim.set_chaos(None);
        // Let the SDK come back and take the replayed audio, then end the stream.
        sdk.pump_until(&mut notices, |_| stream.is_connected())
            .await;
        let settle = tokio::time::Instant::now() + Duration::from_millis(500);
        sdk.pump_until(&mut notices, |_| tokio::time::Instant::now() >= settle)
            .await;
        stream.stop(6).await;
        expected = stream.audio_hashes_sent().len();
    }
    sdk.pump_until(&mut notices, |sdk| sdk.frames.len() >= expected)
        .await;
    let sent: Vec<Got> = stream
        .audio_frames()
        .into_iter()
        .filter(|f| f.fate == FrameFate::Sent)
        .map(|f| Got {
            sha256: hex(&f.sha256),
            ts: f.timestamp,
            user_id: f.user_id.into(),
        })
        .collect();
    let stats = stream.stats();
    assert_eq!(
        stats.audio_dropped, 0,
        "nothing outlived the buffer: {stats:?}"
    );
    assert_eq!(sent.len(), expected, "{stats:?}");
    for (n, (got, want)) in sdk.frames.iter().zip(&sent).enumerate() {
        assert_eq!(got, want, "frame {n} (SDK logs: {})", sdk.logs.display());
    }
    assert_eq!(sdk.frames.len(), sent.len());
    // The timestamps are the production times: strictly increasing per speaker.
    for user in [16_778_240u64, 16_779_264] {
        let ts: Vec<u64> = sdk
            .frames
            .iter()
            .filter(|f| f.user_id == user)
            .map(|f| f.ts)
            .collect();
        assert!(ts.windows(2).all(|w| w[1] == w[0] + 20), "{user}: {ts:?}");
    }
    stream.stop(6).await;
    let sdk_interruptions = sdk.interruptions;
    sdk.quit().await;
    Some(Outcome {
        stats,
        sdk_interruptions,
        chaos: sim.chaos_log().into_iter().map(|i| i.scenario).collect(),
    })
}

#[tokio::test]
async fn the_official_sdk_receives_every_frame_of_a_plain_stream() {
    let Some(o) = run("plain", Product::Meeting, "meeting_uuid", Vec::new()).await else {
        return;
    };
    assert_eq!(o.stats.signaling_handshakes, 1);
    assert_eq!(o.stats.ready_acks, 1);
    assert_eq!(
        o.stats.signaling_interruptions + o.stats.media_interruptions,
        0
    );
}

#[tokio::test]
async fn the_official_sdk_recovers_from_a_media_drop() {
    let faults = vec![(FAULT_AT, Fault::DropMedia)];
    let Some(o) = run("media-drop", Product::Meeting, "meeting_uuid", faults).await else {
        return;
    };
    assert_eq!(o.stats.media_interruptions, 1, "{:?}", o.stats);
    // Event 7 goes out unasked, but the SDK may tear the session down on the media
    // close before it reads it.
    assert!(o.sdk_interruptions <= 1);
    // The SDK rejoins from the signaling handshake on.
    assert_eq!(o.stats.signaling_handshakes, 2);
}

#[tokio::test]
async fn the_official_sdk_recovers_from_a_signaling_drop() {
    let faults = vec![(FAULT_AT, Fault::DropSignaling)];
    let Some(o) = run("signaling-drop", Product::Meeting, "meeting_uuid", faults).await else {
        return;
    };
    assert_eq!(o.stats.signaling_interruptions, 1, "{:?}", o.stats);
    assert_eq!(o.stats.signaling_handshakes, 2);
    assert_eq!(o.stats.media_handshakes, 2, "media went with signaling");
}

#[tokio::test]
async fn the_official_sdk_follows_a_failover_to_the_new_server() {
    let faults = vec![
        (FAULT_AT, Fault::Failover),
        (FAULT_AT + 40, Fault::Failover),
    ];
    let Some(o) = run("failover", Product::Meeting, "meeting_uuid", faults).await else {
        return;
    };
    assert_eq!(o.stats.failovers, 2, "{:?}", o.stats);
    assert_eq!(o.stats.signaling_handshakes, 3);
}

#[tokio::test]
async fn the_official_sdk_recovers_from_missed_keepalives() {
    let faults = vec![
        (FAULT_AT, Fault::MissKeepAlives(SocketKind::Media)),
        // After the media drop (three 500 ms intervals later) and the SDK's rejoin.
        (FAULT_AT + 200, Fault::MissKeepAlives(SocketKind::Signaling)),
    ];
    let setup = Setup {
        frames: LONG,
        keepalive: Duration::from_millis(500),
        chaos: None,
    };
    let Some(o) = run_with(
        "keepalives",
        Product::Meeting,
        "meeting_uuid",
        faults,
        setup,
    )
    .await
    else {
        return;
    };
    assert_eq!(o.stats.dropped_for_keepalive, 2, "{:?}", o.stats);
    assert_eq!(o.stats.media_interruptions, 1);
    assert_eq!(o.stats.signaling_handshakes, 3);
}

#[tokio::test]
async fn the_official_sdk_takes_buffered_audio_replayed_in_a_burst() {
    let faults = vec![(FAULT_AT, Fault::HoldMedia(Duration::from_millis(800)))];
    let Some(o) = run("buffered-replay", Product::Meeting, "meeting_uuid", faults).await else {
        return;
    };
    assert_eq!(o.stats.signaling_handshakes, 1, "no reconnect needed");
}

#[tokio::test]
async fn the_official_sdk_joins_a_webinar() {
    // The SDK's handshakes carry whatever id it was given under `meeting_uuid`; the
    // simulator accepts that for a webinar, as Zoom does.
    let faults = vec![(FAULT_AT, Fault::DropSignaling)];
    let Some(o) = run("webinar", Product::Webinar, "webinar_uuid", faults).await else {
        return;
    };
    assert_eq!(o.stats.signaling_interruptions, 1);
}

#[tokio::test]
async fn the_official_sdk_rides_through_chaos_mode() {
    // Every scenario in turn, a round every second; a stream still recovering from the
    // last one is skipped. Five injections, then the SDK must have every frame sent.
    let chaos = RtmsChaos {
        interval: Duration::from_secs(1),
        hold: Duration::from_millis(500),
        seed: 7,
        ..RtmsChaos::default()
    };
    let setup = Setup {
        // Ten minutes of audio: the stream is stopped long before.
        frames: 30_000,
        keepalive: Duration::from_millis(500),
        chaos: Some((chaos, 5)),
    };
    let Some(o) = run_with("chaos", Product::Meeting, "meeting_uuid", Vec::new(), setup).await
    else {
        return;
    };
    let s = &o.stats;
    let kinds: std::collections::BTreeSet<&str> = o.chaos.iter().map(|c| c.name()).collect();
    assert_eq!(
        kinds.len(),
        5,
        "five different scenarios in turn: {:?}",
        o.chaos
    );
    let injected =
        s.failovers + s.signaling_interruptions + s.media_interruptions + s.dropped_for_keepalive;
    assert!(injected >= 4, "{s:?}");
}
