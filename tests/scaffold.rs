//! End to end: `zoomhost new` (the `scaffold` module). Names and destinations are
//! refused before anything is written; a scaffolded crate builds for wasm32-wasip2 as it
//! is, loads into a real host, and logs what the generated code says it logs.
//!
//! Crates are scaffolded into temp folders only: the real `plugins/` is globbed by the
//! other builds.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::*;
use zoomhost::config::HostConfig;
use zoomhost::scaffold::{self, ScaffoldError, ScaffoldOptions, Scaffolded};
use zoomhost::wasm_build::{self, WASM_TARGET};
use zoomhost_runtime::PluginHost;
use zoomhost_types::{AudioFrame, Event, EventSource, TranscriptSegment};

const WAIT: Duration = Duration::from_secs(30);

/// Options that scaffold into `dest`, printing `zoomhost` in the next steps.
fn into(dest: &Path) -> ScaffoldOptions {
    ScaffoldOptions {
        dest: Some(dest.to_path_buf()),
        program: Some("zoomhost".into()),
        ..ScaffoldOptions::default()
    }
}

fn scaffold_error(result: anyhow::Result<Scaffolded>) -> ScaffoldError {
    match result {
        Ok(made) => panic!("expected an error, made {}", made.dir.display()),
        Err(e) => e
            .downcast::<ScaffoldError>()
            .unwrap_or_else(|e| panic!("not a ScaffoldError: {e:#}")),
    }
}

/// A folder with nothing in it but what `ls` shows.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A minimal zoomhost checkout: a workspace with `plugins/` and the SDK's manifest.
fn fake_checkout(root: &Path) -> PathBuf {
    let ws = root.join("zoomhost");
    std::fs::create_dir_all(ws.join("plugins/taken")).unwrap();
    std::fs::create_dir_all(ws.join("plugin-sdk")).unwrap();
    std::fs::write(
        ws.join("Cargo.toml"),
        "[workspace]\nmembers = [\"plugin-sdk\", \"plugins/*\"]\n",
    )
    .unwrap();
    std::fs::write(
        ws.join("plugin-sdk/Cargo.toml"),
        "[package]\nname = \"zoomhost-sdk\"\nversion = \"0.1.0\"\n",
    )
    .unwrap();
    std::fs::write(
        ws.join("plugins/taken/Cargo.toml"),
        "[package]\nname = \"already_taken\"\nversion = \"0.1.0\"\n",
    )
    .unwrap();
    ws
}

#[test]
fn bad_names_existing_destinations_and_clashes_are_refused_before_writing() {
    let tmp = tempfile::tempdir().unwrap();

    // Invalid names: the error names the problem and a fix; nothing is created.
    for (name, reason) in [
        ("My-Plugin", "uppercase 'M' is not allowed"),
        ("9lives", "starts with '9'"),
        ("my plugin", "whitespace"),
        ("", "empty"),
        ("type", "Rust keyword"),
    ] {
        let err = scaffold_error(scaffold::create(name, &into(&tmp.path().join("x"))));
        assert!(
            matches!(&err, ScaffoldError::InvalidName { .. }),
            "{name:?}: {err}"
        );
        let text = err.to_string();
        assert!(text.contains(reason), "{name:?}: {text}");
        assert!(
            text.contains("lowercase letters, digits, '-' and '_'"),
            "{text}"
        );
    }
    assert!(scaffold::create("My-Plugin", &into(&tmp.path().join("x")))
        .unwrap_err()
        .to_string()
        .contains(r#"(try "my-plugin")"#));
    assert!(listing(tmp.path()).is_empty(), "{:?}", listing(tmp.path()));

    // An existing destination, even an empty folder, is never touched.
    let existing = tmp.path().join("mine");
    std::fs::create_dir(&existing).unwrap();
    std::fs::write(existing.join("keep.txt"), "mine").unwrap();
    let err = scaffold_error(scaffold::create("fresh", &into(&existing)));
    assert!(
        matches!(&err, ScaffoldError::DestinationExists { path } if path == &existing),
        "{err}"
    );
    assert!(err.to_string().contains("never overwrites"), "{err}");
    assert_eq!(listing(&existing), ["keep.txt"]);
    assert_eq!(
        std::fs::read_to_string(existing.join("keep.txt")).unwrap(),
        "mine"
    );
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(matches!(
        scaffold_error(scaffold::create("fresh", &into(&empty))),
        ScaffoldError::DestinationExists { .. }
    ));
    assert!(listing(&empty).is_empty());

    // The crates of the zoomhost checkout the SDK comes from: an example plugin, a test
    // plugin, the host. `_` and `-` are the same name to the built `.wasm`.
    for (name, existing) in [
        ("event-logger", "event-logger"),
        ("event_logger", "event-logger"),
        ("recorder", "recorder"),
    ] {
        let err = scaffold_error(scaffold::create(name, &into(&tmp.path().join(name))));
        match &err {
            ScaffoldError::NameClash {
                existing: found, ..
            } => assert_eq!(found, existing),
            other => panic!("{name}: {other}"),
        }
        assert!(!tmp.path().join(name).exists());
    }
}

#[test]
fn inside_a_zoomhost_checkout_the_crate_becomes_a_workspace_member() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = fake_checkout(tmp.path());
    let nested = ws.join("plugins/taken");
    let options = ScaffoldOptions {
        cwd: Some(nested.clone()),
        program: Some("zoomhost".into()),
        ..ScaffoldOptions::default()
    };

    let made = scaffold::create("meeting-bot", &options).unwrap();
    println!("{made}");
    let ws = ws.canonicalize().unwrap();
    assert!(made.workspace_member);
    assert_eq!(made.dir, ws.join("plugins/meeting-bot"));
    assert_eq!(made.checkout, ws);
    assert_eq!(made.wasm_file, "meeting_bot.wasm");
    let mut files: Vec<String> = made.files.iter().map(|f| f.display().to_string()).collect();
    files.sort();
    assert_eq!(files, ["Cargo.toml", "README.md", "src/lib.rs"]);

    // The manifest is shaped exactly like the example plugin's.
    let example = std::fs::read_to_string(workspace().join("plugins/event-logger/Cargo.toml"))
        .unwrap()
        .replace("event-logger", "meeting-bot");
    let manifest = std::fs::read_to_string(made.dir.join("Cargo.toml")).unwrap();
    assert_eq!(manifest, example);
    let lib = std::fs::read_to_string(made.dir.join("src/lib.rs")).unwrap();
    assert!(lib.contains("struct MeetingBotPlugin;"), "{lib}");
    assert!(lib.contains("zoomhost_sdk::export_plugin!(MeetingBotPlugin);"));
    assert!(lib.contains(r#"Metadata::new("meeting-bot", "#));
    assert!(lib.contains("[plugins.meeting-bot.config]"));

    // Next steps run from the workspace root and end with `zoomhost dev`.
    let commands: Vec<&str> = made.next_steps.iter().map(|s| s.command.as_str()).collect();
    assert_eq!(commands[0], format!("cd {}", ws.display()));
    assert!(commands.contains(
        &"cargo build --release --target wasm32-wasip2 --target-dir target/wasm -p meeting-bot"
    ));
    assert!(commands.contains(&"zoomhost check target/wasm/wasm32-wasip2/release/meeting_bot.wasm"));
    assert_eq!(commands.last(), Some(&"zoomhost dev"));
    let printed = made.to_string();
    assert!(
        printed.contains("a member of the zoomhost workspace"),
        "{printed}"
    );
    assert!(printed.contains("\n  zoomhost dev\n"), "{printed}");
    let readme = std::fs::read_to_string(made.dir.join("README.md")).unwrap();
    assert!(readme.contains("zoomhost dev"), "{readme}");
    assert!(readme.contains("[plugins.meeting-bot]"), "{readme}");
    assert!(!readme.contains(&ws.display().to_string()), "{readme}");

    // The same name again, or one a crate of the workspace uses, is refused.
    assert!(matches!(
        scaffold_error(scaffold::create("meeting-bot", &options)),
        ScaffoldError::DestinationExists { .. }
    ));
    match scaffold_error(scaffold::create("already-taken", &options)) {
        ScaffoldError::NameClash {
            existing, manifest, ..
        } => {
            assert_eq!(existing, "already_taken");
            assert_eq!(manifest, ws.join("plugins/taken/Cargo.toml"));
        }
        other => panic!("{other}"),
    }

    // A folder outside `plugins/`, even inside the checkout, gets a standalone crate
    // (it needs the real SDK, so point at it).
    let elsewhere = scaffold::create(
        "side-project",
        &ScaffoldOptions {
            dest: Some("side-project".into()),
            cwd: Some(ws.clone()),
            ..ScaffoldOptions::default()
        },
    )
    .unwrap();
    assert!(!elsewhere.workspace_member);
    assert_eq!(elsewhere.dir, ws.join("side-project"));
}

fn segment(text: &str, ts: u64) -> TranscriptSegment {
    TranscriptSegment {
        user_id: 16778240,
        user_name: "Ada".into(),
        timestamp: ts,
        end_timestamp: None,
        text: text.into(),
        language: Some("en".into()),
    }
}

/// `cargo clippy -- -D warnings` for the wasm target, in the crate's folder.
fn clippy(dir: &Path, target_dir: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(dir)
        .args([
            "clippy",
            "--release",
            "--target",
            WASM_TARGET,
            "--target-dir",
        ])
        .arg(target_dir)
        .args(["--", "-D", "warnings"]);
    zoomhost::wasm_build::plugin_build_settings(&mut cmd);
    let out = cmd.output().expect("running cargo clippy");
    assert!(
        out.status.success(),
        "clippy found problems in the generated crate:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_scaffold_builds_loads_and_logs_events_and_media() {
    let tmp = tempfile::tempdir().unwrap();
    let made = scaffold::create("scaffold-e2e", &into(&tmp.path().join("scaffold-e2e"))).unwrap();
    println!("{made}");
    assert!(!made.workspace_member);
    assert_eq!(made.checkout, workspace().canonicalize().unwrap());

    // A standalone crate: its own workspace, the SDK of this checkout by absolute path,
    // and this checkout's lock file.
    let manifest: toml::Value =
        toml::from_str(&std::fs::read_to_string(made.dir.join("Cargo.toml")).unwrap()).unwrap();
    assert_eq!(manifest["package"]["name"].as_str(), Some("scaffold-e2e"));
    assert_eq!(
        manifest["lib"]["crate-type"].as_array().unwrap()[0].as_str(),
        Some("cdylib")
    );
    assert!(manifest["workspace"].as_table().unwrap().is_empty());
    let sdk = manifest["dependencies"]["zoomhost-sdk"]["path"]
        .as_str()
        .unwrap();
    assert_eq!(
        Path::new(sdk),
        workspace().join("plugin-sdk").canonicalize().unwrap()
    );
    assert!(made.dir.join("Cargo.lock").is_file());
    assert!(made.dir.join(".gitignore").is_file());

    // The printed steps: build, check, deploy as NAME.wasm, replay the sample meeting.
    let commands: Vec<&str> = made.next_steps.iter().map(|s| s.command.as_str()).collect();
    assert!(commands.contains(&"cargo build --release --target wasm32-wasip2"));
    assert!(commands.contains(&"zoomhost check target/wasm32-wasip2/release/scaffold_e2e.wasm"));
    assert!(commands.contains(
        &"mkdir -p plugins && cp target/wasm32-wasip2/release/scaffold_e2e.wasm plugins/scaffold-e2e.wasm"
    ));
    assert!(commands.iter().any(|c| c.starts_with("zoomhost replay ")
        && c.ends_with("host/samples/meeting.jsonl --plugins plugins")));

    // Build it as it is, sharing the other plugin builds' dependencies, and lint it.
    let target_dir = workspace().join("target/wasm");
    let (dir, td) = (made.dir.clone(), target_dir.clone());
    let out = tokio::task::spawn_blocking(move || {
        let out = wasm_build::build_plugins(&dir, &["scaffold-e2e"], &td)?;
        clippy(&dir, &td);
        anyhow::Ok(out)
    })
    .await
    .unwrap()
    .expect("building the scaffolded crate");
    let wasm = wasm_build::artifact(&out, "scaffold-e2e");

    // Deploy it as its name, with a config value, into a real host.
    let host_dir = tmp.path().join("host");
    std::fs::create_dir_all(host_dir.join("plugins")).unwrap();
    std::fs::copy(&wasm, host_dir.join("plugins/scaffold-e2e.wasm")).unwrap();
    let config_path = host_dir.join("zoomhost.toml");
    std::fs::write(
        &config_path,
        "[plugins.scaffold-e2e.config]\nmin_words = \"2\"\n",
    )
    .unwrap();
    let logs = Logs::default();
    let host = PluginHost::new(
        HostConfig::load(&config_path).unwrap().runtime,
        Some(logs.sink()),
    )
    .unwrap();
    assert_eq!(host.load_dir().await.unwrap(), ["scaffold-e2e"]);
    let p = "scaffold-e2e";
    assert_eq!(
        logs.lines(p, "ready: "),
        ["ready: logging transcript segments of at least 2 word(s)"]
    );

    // Events: `meeting.*` only, with the topic from the payload.
    let router = host.router();
    let queued = router.dispatch_event(Event {
        id: "scaffold-1".into(),
        name: "meeting.started".into(),
        timestamp: 1_700_000_000_000,
        payload: r#"{"account_id":"acc","object":{"id":"85746065","uuid":"mtg-uuid==","topic":"Weekly sync"}}"#.into(),
        source: EventSource::Simulator,
    });
    assert_eq!(queued.len(), 1);
    assert!(router
        .dispatch_event(event("recording.completed", 1))
        .is_empty());
    assert!(eventually(WAIT, || !logs.lines(p, "meeting.started").is_empty()).await);
    assert_eq!(
        logs.lines(p, "meeting."),
        [r#"meeting.started topic="Weekly sync""#]
    );

    // Media: audio frames are counted, transcripts of at least `min_words` words
    // logged, and the stream summarised when it closes.
    let stream = router.open_stream(stream_info("s1"));
    assert_eq!(stream.plugins().len(), 1);
    for i in 0..5u64 {
        stream.audio(AudioFrame {
            user_id: 16778240,
            user_name: "Ada".into(),
            timestamp: 1_700_000_000_000 + 20 * i,
            data: vec![0; 640].into(),
        });
    }
    stream.transcript(segment("good morning everyone", 1_700_000_000_040));
    stream.transcript(segment("ok", 1_700_000_000_080));
    stream.close();
    assert!(eventually(WAIT, || !logs.lines(p, "stream s1 ended").is_empty()).await);
    assert_eq!(
        logs.lines(p, "stream s1 "),
        [
            "stream s1 opened for meeting mtg-uuid== (16000 Hz audio)",
            "stream s1 ended: 5 audio frames (3200 bytes), 2 transcript segments",
        ]
    );
    assert_eq!(logs.lines(p, "Ada: "), ["Ada: good morning everyone"]);

    let stats = host.stats(p).await.unwrap();
    assert_eq!((stats.events_delivered, stats.events_failed), (1, 0));
    assert_eq!((stats.media_failed, stats.crashes), (0, 0));
    host.shutdown(Duration::from_secs(5)).await;
}
