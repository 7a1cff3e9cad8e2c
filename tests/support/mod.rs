//! Shared by the end-to-end tests: the repo's plugin crates built for wasm32-wasip2 (by
//! `zoomhost-test-artifacts`), hosts in temp folders, and captures of plugin and host log
//! lines.

#![allow(dead_code)]

pub mod wasmgen;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use zoomhost::config::HostConfig;
use zoomhost_runtime::{LogSink, PluginHost, PluginLogRecord};
use zoomhost_types::{Event, EventSource};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("host/zoomhost is two levels below the workspace root")
        .to_path_buf()
}

/// The folder holding the test plugins' `.wasm` files, built once by
/// `zoomhost-test-artifacts`' build script.
pub fn built() -> &'static Path {
    Path::new(zoomhost_test_artifacts::path("recorder"))
        .parent()
        .expect("a .wasm file has a folder")
}

/// The built `.wasm` of a crate.
pub fn wasm(krate: &str) -> PathBuf {
    PathBuf::from(zoomhost_test_artifacts::path(krate))
}

/// Plugin log lines captured from a host.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<PluginLogRecord>>>);

impl Logs {
    /// A sink feeding this capture.
    pub fn sink(&self) -> LogSink {
        let logs = self.0.clone();
        Arc::new(move |r: &PluginLogRecord| logs.lock().unwrap().push(r.clone()))
    }

    /// Lines of one plugin starting with `prefix`.
    pub fn lines(&self, plugin: &str, prefix: &str) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.plugin == plugin && r.message.starts_with(prefix))
            .map(|r| r.message.clone())
            .collect()
    }

    /// Lines of one plugin starting with `prefix`, each with the number of the instance
    /// that wrote it.
    pub fn records(&self, plugin: &str, prefix: &str) -> Vec<(u32, String)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.plugin == plugin && r.message.starts_with(prefix))
            .map(|r| (r.instance, r.message.clone()))
            .collect()
    }

    /// Lines of one plugin containing `needle`.
    pub fn containing(&self, plugin: &str, needle: &str) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.plugin == plugin && r.message.contains(needle))
            .map(|r| r.message.clone())
            .collect()
    }
}

/// A temp folder with `plugins/` holding `plugins` (`(file stem, crate)`) and
/// `zoomhost.toml` holding `config_toml` (without `plugins_dir`), and that config loaded.
fn host_folder(config_toml: &str, plugins: &[(&str, &str)]) -> (tempfile::TempDir, HostConfig) {
    let dir = tempfile::tempdir().unwrap();
    let plugins_dir = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins_dir).unwrap();
    for (stem, krate) in plugins {
        std::fs::copy(wasm(krate), plugins_dir.join(format!("{stem}.wasm"))).unwrap();
    }
    let config_path = dir.path().join("zoomhost.toml");
    std::fs::write(&config_path, config_toml).unwrap();
    let config = HostConfig::load(&config_path).unwrap();
    (dir, config)
}

/// A host over a temp plugins folder.
pub struct TestHost {
    pub host: Arc<PluginHost>,
    pub logs: Logs,
    pub dir: tempfile::TempDir,
}

impl TestHost {
    /// Copies `plugins` (`(file stem, crate)`) into a temp folder, writes `config_toml`
    /// (without `plugins_dir`) and loads the folder.
    pub async fn start(config_toml: &str, plugins: &[(&str, &str)]) -> TestHost {
        let (dir, config) = host_folder(config_toml, plugins);
        let logs = Logs::default();
        let host = PluginHost::new(config.runtime, Some(logs.sink())).unwrap();
        let loaded = host.load_dir().await.unwrap();
        assert_eq!(loaded.len(), plugins.len(), "loaded {loaded:?}");
        TestHost { host, logs, dir }
    }

    /// Like [`TestHost::start`], but the whole host as `zoomhost run` starts it
    /// (`zoomhost::host::Host`): the plugins, the input path, and the Zoom sources and RTMS
    /// client `zoom` enables. The returned `Host` is for taps, the RTMS client and
    /// shutdown; `TestHost::host` is its plugin runtime.
    pub async fn start_live(
        config_toml: &str,
        plugins: &[(&str, &str)],
        zoom: zoomhost::config::ZoomConfig,
    ) -> (TestHost, zoomhost::host::Host) {
        let (dir, mut config) = host_folder(config_toml, plugins);
        config.zoom = Some(zoom);
        let logs = Logs::default();
        let live = zoomhost::host::Host::start(
            config,
            zoomhost::host::HostOptions {
                log_sink: Some(logs.sink()),
                watch: None,
            },
        )
        .await
        .unwrap();
        let host = live.plugins().clone();
        assert_eq!(host.plugins().await.len(), plugins.len());
        (TestHost { host, logs, dir }, live)
    }

    /// The plugins folder.
    pub fn plugins_dir(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }

    /// Puts `bytes` in the plugins folder as `STEM.wasm`: written beside it, then
    /// renamed over it, as a deploy would.
    pub fn deploy(&self, stem: &str, bytes: &[u8]) {
        let tmp = self.dir.path().join(format!("{stem}.wasm.tmp"));
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, self.plugins_dir().join(format!("{stem}.wasm"))).unwrap();
    }

    /// The plugin's stats, read from synchronous code on a multi-thread runtime (e.g.
    /// inside an `eventually` condition).
    pub fn stats_now(&self, name: &str) -> zoomhost_runtime::StatsSnapshot {
        let host = self.host.clone();
        let name = name.to_string();
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current()
                .block_on(async move { host.stats(&name).await.unwrap() })
        })
    }

    /// The config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("zoomhost.toml")
    }
}

/// An event whose payload carries `id` (what the recorder reports).
pub fn event(name: &str, id: usize) -> Event {
    Event {
        id: format!("event-{id}"),
        name: name.to_string(),
        timestamp: 1_700_000_000_000 + id as u64,
        payload: format!(r#"{{"id":"e-{id}","object":{{"topic":"Standup"}}}}"#),
        source: EventSource::Replay,
    }
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes; returns whether it held.
pub async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An RTMS simulator for the app `client_id`/`client_secret`, with Zoom's timers but
/// keep-alives every `keepalive`.
pub async fn rtms_sim(
    client_id: &str,
    client_secret: &str,
    keepalive: Duration,
) -> Arc<zoomhost_sim::rtms::RtmsSim> {
    zoomhost_sim::rtms::RtmsSim::start(zoomhost_sim::rtms::RtmsSimConfig {
        client_id: client_id.into(),
        client_secret: client_secret.into(),
        keepalive_interval: keepalive,
        ..zoomhost_sim::rtms::RtmsSimConfig::default()
    })
    .await
    .expect("RTMS simulator")
}

/// The `id=` values of the recorder's event lines, in order.
pub fn event_ids(logs: &Logs, plugin: &str) -> Vec<String> {
    logs.lines(plugin, "rec event ")
        .iter()
        .map(|l| field(l, "id").to_string())
        .collect()
}

/// The value of `key=` in a space-separated line.
pub fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// FNV-1a 64, as the recorder computes it.
pub fn fnv1a(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// `bytes` (a component) with a custom section appended, so it differs from the
/// original while doing the same thing: a new "version" for reload tests.
pub fn retagged(bytes: &[u8], tag: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    // section id 0 (custom), size 6, name "zhv" (len 3), payload [tag, 0]
    out.extend_from_slice(&[0, 6, 3, b'z', b'h', b'v', tag, 0]);
    out
}

/// The host's tracing output, captured for the whole test binary by one global subscriber
/// (tracing caches per-callsite interest globally, so a thread-scoped subscriber misses
/// records while other tests run in parallel). Tests that check what reaches the logs, or
/// that nothing secret does, read it: it holds every test's records, all the better for a
/// leak check.
pub fn host_logs() -> &'static SharedBuffer {
    static CAPTURE: OnceLock<SharedBuffer> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = SharedBuffer::default();
        let filter = tracing_subscriber::EnvFilter::new(
            "zoomhost=trace,plugin=debug,tokio_tungstenite=debug,tungstenite=debug,reqwest=debug,hyper=debug,warn",
        );
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(capture.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other tracing subscriber in the test binary");
        capture
    })
}

/// A `Write` (and tracing `MakeWriter`) into a shared buffer: captures a live view's or a
/// tracing subscriber's output for a test to read.
#[derive(Clone, Default)]
pub struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for SharedBuffer {
    type Writer = SharedBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// A meeting stream with Zoom's default audio (L16, 16 kHz, mono, 20 ms) carrying audio
/// and transcript.
pub fn stream_info(id: &str) -> zoomhost_types::StreamInfo {
    use zoomhost_types::{AudioCodec, AudioFormat, MediaKind, SessionKind, StreamInfo};
    StreamInfo {
        stream_id: id.to_string(),
        meeting_id: "mtg-uuid==".to_string(),
        kind: SessionKind::Meeting,
        media: vec![MediaKind::Audio, MediaKind::Transcript],
        audio: AudioFormat {
            codec: AudioCodec::L16,
            sample_rate: 16_000,
            channels: 1,
            frame_ms: 20,
        },
    }
}
