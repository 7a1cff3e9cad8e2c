//! End to end: a plugin written in another language. `plugins/keyword-alert-js` (JavaScript)
//! is built into a real component by its own toolchain (`build.sh`: componentize-qjs,
//! installed into `target/polyglot/` on first use) and loaded by a real host, which feeds
//! it transcript segments through the router as an RTMS stream would.
//!
//! When the toolchain cannot be had (no Node.js, or no npm registry) the tests print
//! `SKIP` and pass, unless `ZOOMHOST_REQUIRE_POLYGLOT` is set, in which case they fail.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::support::*;
use zoomhost::config::HostConfig;
use zoomhost_runtime::bindings::types::{LogLevel, MediaKind};
use zoomhost_runtime::identity::PluginIdentity;
use zoomhost_runtime::instance::LiveInstance;
use zoomhost_runtime::{LogSink, PluginHost, PluginLogRecord, Runtime, RuntimeConfig};
use zoomhost_types::{AudioFrame, TranscriptSegment};

const WAIT: Duration = Duration::from_secs(30);
const PLUGIN: &str = "keyword-alert";
/// `build.sh`'s exit status for "the toolchain cannot be had".
const TOOLCHAIN_UNAVAILABLE: i32 = 77;

/// Builds the JavaScript plugin once per test binary (`build.sh` itself skips the work
/// when the component is newer than its sources). `None` means the toolchain is not
/// available here and the test should be skipped.
fn keyword_alert_wasm() -> Option<&'static Path> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = workspace();
            let out = root.join("target/polyglot/keyword-alert.wasm");
            let output = Command::new("bash")
                .arg(root.join("plugins/keyword-alert-js/build.sh"))
                .arg(&out)
                .current_dir(&root)
                .output()
                .expect("running bash plugins/keyword-alert-js/build.sh");
            let log = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            match output.status.code() {
                Some(0) => Some(out),
                Some(TOOLCHAIN_UNAVAILABLE)
                    if std::env::var_os("ZOOMHOST_REQUIRE_POLYGLOT").is_none() =>
                {
                    eprintln!(
                        "SKIP polyglot: the JavaScript toolchain is not available here \
                         (set ZOOMHOST_REQUIRE_POLYGLOT=1 to make this a failure):\n{log}"
                    );
                    None
                }
                _ => panic!(
                    "building plugins/keyword-alert-js failed ({}):\n{log}",
                    output.status
                ),
            }
        })
        .as_deref()
}

/// Every plugin log line, with its level.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<PluginLogRecord>>>);

impl Capture {
    fn sink(&self) -> LogSink {
        let lines = self.0.clone();
        Arc::new(move |r: &PluginLogRecord| lines.lock().unwrap().push(r.clone()))
    }

    /// `(level, message)` of the plugin's lines starting with `prefix`.
    fn lines(&self, prefix: &str) -> Vec<(LogLevel, String)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.plugin == PLUGIN && r.message.starts_with(prefix))
            .map(|r| (r.level, r.message.clone()))
            .collect()
    }

    /// The messages of the plugin's alert lines.
    fn alerts(&self) -> Vec<String> {
        self.lines("alert ")
            .into_iter()
            .map(|(level, message)| {
                assert!(
                    matches!(level, LogLevel::Warn),
                    "alert at {level:?}: {message}"
                );
                message
            })
            .collect()
    }
}

/// Writes `zoomhost.toml` (plugins folder `plugins/` beside it) and parses it.
fn write_config(dir: &Path, toml: &str) -> RuntimeConfig {
    let path = dir.join("zoomhost.toml");
    std::fs::write(&path, toml).unwrap();
    HostConfig::load(&path).unwrap().runtime
}

fn config_with_keywords(keywords: &str) -> String {
    format!("[plugins.{PLUGIN}]\nconfig = {{ keywords = {keywords:?} }}\n")
}

fn segment(i: usize, user: &str, text: &str) -> TranscriptSegment {
    TranscriptSegment {
        user_id: 16_778_240 + i as u32,
        user_name: user.to_string(),
        timestamp: 1_700_000_000_000 + 1_000 * i as u64,
        end_timestamp: Some(1_700_000_000_900 + 1_000 * i as u64),
        text: text.to_string(),
        language: Some("en".into()),
    }
}

/// The alert line the plugin logs: keyword, user and text as JSON strings.
fn alert(keyword: &str, stream: &str, user: &str, text: &str) -> String {
    let json = |s: &str| serde_json::to_string(s).unwrap();
    format!(
        "alert keyword={} stream={stream} user={} text={}",
        json(keyword),
        json(user),
        json(text)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_plugin_alerts_on_keywords_in_transcripts_and_only_then() {
    let Some(wasm) = keyword_alert_wasm() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let plugins_dir = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins_dir).unwrap();
    std::fs::copy(wasm, plugins_dir.join(format!("{PLUGIN}.wasm"))).unwrap();
    // Blanks, case and duplicates in the list are the operator's to get wrong.
    let config = write_config(
        dir.path(),
        &config_with_keywords(" Budget , deadline,BUDGET,, go   live, Überweisung, C++"),
    );
    let logs = Capture::default();
    let host = PluginHost::new(config, Some(logs.sink())).unwrap();
    assert_eq!(host.load_dir().await.unwrap(), vec![PLUGIN.to_string()]);
    assert_eq!(
        logs.lines("watching "),
        vec![(
            LogLevel::Info,
            r#"watching 5 keyword(s): "budget", "deadline", "go live", "überweisung", "c++""#
                .to_string()
        )]
    );
    let info = host.plugins().await;
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].metadata.name, PLUGIN);
    assert_eq!(info[0].metadata.media, vec![MediaKind::Transcript]);
    assert!(info[0].metadata.events.is_empty());

    let stream = host.router().open_stream(stream_info("stream-1"));
    assert_eq!(
        stream
            .plugins()
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>(),
        vec![PLUGIN.to_string()]
    );
    // (user, text, keywords expected in it, in configured order)
    let script: &[(&str, &str, &[&str])] = &[
        ("Ada", "Let's review the BUDGET today.", &["budget"]),
        ("Grace", "nothing to see here", &[]),
        ("Ada", "budgetary matters, deadlines and overbudget", &[]),
        (
            "Grace Hopper",
            "The deadline for the budget is \"Friday\"\n(really)",
            &["budget", "deadline"],
        ),
        (
            "Ada",
            "we go\t live on Monday; not going live",
            &["go live"],
        ),
        ("Ada", "go-live is not the phrase", &[]),
        ("Zoë", "ÜBERWEISUNG heute, bitte", &["überweisung"]),
        ("Ada", "Is C++ allowed? C# is not a keyword", &["c++"]),
        ("Ada", "Budget, budget and BUDGET again", &["budget"]),
        ("Ada", "a quiet segment to finish", &[]),
        ("Ada", "last: the deadline", &["deadline"]),
    ];
    let mut expected = Vec::new();
    for (i, (user, text, keywords)) in script.iter().enumerate() {
        // Audio on the same stream is not subscribed to and must change nothing.
        stream.audio(AudioFrame {
            user_id: 16_778_240,
            user_name: (*user).to_string(),
            timestamp: 1_700_000_000_000 + 20 * i as u64,
            data: vec![0; 640].into(),
        });
        stream.transcript(segment(i, user, text));
        for k in *keywords {
            expected.push(alert(k, "stream-1", user, text));
        }
    }
    // Deliveries are in order and the last segment alerts: once its line is there,
    // every segment before it has been handled.
    let last = expected.last().unwrap().clone();
    assert!(
        eventually(WAIT, || logs.alerts().contains(&last)).await,
        "alerts so far: {:#?}",
        logs.alerts()
    );
    assert_eq!(logs.alerts(), expected);
    stream.close();

    let stats = host.stats(PLUGIN).await.unwrap();
    assert_eq!(stats.media_failed, 0, "{stats:?}");
    assert_eq!(stats.crashes, 0, "{stats:?}");
    assert!(stats.media_delivered >= script.len() as u64, "{stats:?}");

    // New keywords from the operator take effect without a new build or load.
    let before = logs.alerts().len();
    host.apply_config(write_config(dir.path(), &config_with_keywords("friday")))
        .await;
    assert!(
        eventually(WAIT, || logs.lines("watching 1 keyword(s)").len() == 1).await,
        "{:?}",
        logs.lines("watching")
    );
    // A config that leaves no keywords is refused by init; the running instance (with
    // "friday") keeps serving.
    host.apply_config(write_config(dir.path(), &config_with_keywords(" , ")))
        .await;
    let stream = host.router().open_stream(stream_info("stream-2"));
    stream.transcript(segment(100, "Ada", "the budget is due friday"));
    stream.transcript(segment(101, "Ada", "FRIDAY again"));
    let expected_after = [
        alert("friday", "stream-2", "Ada", "the budget is due friday"),
        alert("friday", "stream-2", "Ada", "FRIDAY again"),
    ];
    assert!(
        eventually(WAIT, || logs.alerts().len() == before + 2).await,
        "{:#?}",
        logs.alerts()
    );
    assert_eq!(logs.alerts()[before..], expected_after[..]);
    stream.close();
    assert_eq!(host.stats(PLUGIN).await.unwrap().crashes, 0);
    host.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_javascript_plugin_refuses_to_start_without_keywords() {
    let Some(wasm) = keyword_alert_wasm() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(wasm).unwrap();
    let config = write_config(dir.path(), "");
    let runtime = Runtime::new(&config).unwrap();
    let compiled = runtime
        .compile(&bytes, "keyword-alert.wasm", &config.limits)
        .unwrap();
    // Built against the repository's current world, not through the 0.1.0 path.
    assert_eq!(
        compiled.world_version(),
        zoomhost_runtime::bindings::WorldVersion::V0_2
    );
    let start = |toml: &str| {
        let config = write_config(dir.path(), toml);
        let identity = Arc::new(PluginIdentity::new(PLUGIN, config.grant(PLUGIN), None));
        LiveInstance::start(&runtime, &compiled, identity)
    };
    for toml in [
        "",
        &config_with_keywords(""),
        &config_with_keywords(" ,  , "),
    ] {
        let err = start(toml)
            .await
            .err()
            .unwrap_or_else(|| panic!("init accepted {toml:?}"));
        assert_eq!(
            err,
            "init() returned error: config key `keywords` is not set or has no keywords; \
             set it to a comma-separated list, e.g. keywords = \"budget, deadline\"",
            "config {toml:?}"
        );
    }
    let instance = start(&config_with_keywords("budget"))
        .await
        .expect("init with a keyword");
    let m = instance.metadata();
    assert_eq!(m.name, PLUGIN);
    assert_eq!(m.version, "0.1.0");
    assert_eq!(m.config_keys, vec!["keywords".to_string()]);
    assert!(m.wanted_hosts.is_empty());
}
