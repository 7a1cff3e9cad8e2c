//! The sandbox's budgets, each met by a hostile component beside a well-behaved plugin
//! that must keep every delivery: host-side handles, memories and core instances,
//! outbound connections, compile cost, metadata, swaps whose `restore` fails, plugin
//! files that are not regular files. Included in the `runtime` test binary.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::wasmgen::{with_extra_memories, with_many_functions};
use crate::support::*;
use zoomhost_runtime::{LoadOutcome, PluginHost, StatsSnapshot};

const WAIT: Duration = Duration::from_secs(60);

/// Polls a plugin's stats until `f` holds; panics naming `what` otherwise.
async fn stats_until(
    host: &PluginHost,
    name: &str,
    what: &str,
    f: impl Fn(&StatsSnapshot) -> bool,
) -> StatsSnapshot {
    for _ in 0..6000 {
        let s = host.stats(name).await.expect("plugin loaded");
        if f(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "{name}: expected {what}, stats {:?}",
        host.stats(name).await
    );
}

/// Dispatches `n` events and checks the recorder `good` received all of them, in order.
async fn good_gets_everything(t: &TestHost, n: usize) {
    let router = t.host.router().clone();
    for i in 0..n {
        router.dispatch_event(event("meeting.started", i));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        eventually(WAIT, || event_ids(&t.logs, "good").len() == n).await,
        "good saw {} of {n} events",
        event_ids(&t.logs, "good").len()
    );
    let expected: Vec<String> = (0..n).map(|i| format!("e-{i}")).collect();
    assert_eq!(event_ids(&t.logs, "good"), expected);
    let good = t.host.stats("good").await.unwrap();
    assert_eq!((good.events_dropped, good.crashes), (0, 0), "{good:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_resources_a_plugin_keeps_are_capped_by_its_handle_budget() {
    let t = TestHost::start(
        r#"
        [limits]
        max_failures = 3
        [plugins.h-fields]
        config = { mode = "fields-hoard", n = "300", size = "15000" }
        [plugins.h-requests]
        config = { mode = "request-hoard" }
        [plugins.h-big-field]
        config = { mode = "fields-hoard", n = "1", size = "100000" }
        "#,
        &[
            ("good", "recorder"),
            ("h-fields", "hostile"),
            ("h-requests", "hostile"),
            ("h-big-field", "hostile"),
        ],
    )
    .await;
    good_gets_everything(&t, 20).await;
    // 300 fields of 15 kB per event, all kept: the 1024-handle budget is reached on the
    // fourth event, and the instance is killed with a reason naming the budget.
    let s = stats_until(&t.host, "h-fields", "a kill", |s| s.crashes >= 1).await;
    let why = s.last_crash.clone().unwrap_or_default();
    assert!(why.contains("limits.max_handles"), "{why}");
    assert!(!why.contains('\n'), "one line: {why}");
    let kept = t.logs.containing("h-fields", "hostile hoard fields=");
    assert!(kept.len() >= 3, "{kept:?}");
    // One header value over the per-object limit: killed, naming that budget.
    let s = stats_until(&t.host, "h-big-field", "a kill", |s| s.crashes >= 1).await;
    let why = s.last_crash.clone().unwrap_or_default();
    assert!(why.contains("limits.http_field_bytes"), "{why}");
    // The loop creating requests forever stops at the budget, long before its deadline.
    let s = stats_until(&t.host, "h-requests", "quarantine", |s| s.quarantined).await;
    let why = s.last_crash.clone().unwrap_or_default();
    assert!(why.contains("limits.max_handles"), "{why}");
    assert!(!why.contains("deadline"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_memories_and_instances_are_refused_and_the_pool_stays_usable() {
    let t = TestHost::start("", &[("good", "recorder")]).await;
    let hostile = std::fs::read(wasm("hostile")).unwrap();
    // More linear memories than `max_memories` (4): refused at instantiation.
    let err = t
        .host
        .load_bytes("h-mem", with_extra_memories(&hostile, 16, 1), "h-mem.wasm")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("limits.max_memories"), "{err}");
    // Few memories, but together over the 64 MiB cap: refused too.
    let err = t
        .host
        .load_bytes("h-big", with_extra_memories(&hostile, 2, 512), "h-big.wasm")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("memory cap") || err.contains("limits.memory_mib"),
        "{err}"
    );
    // Hundreds of them are refused before compiling, by the core-instance count.
    let err = t
        .host
        .load_bytes("h-508", with_extra_memories(&hostile, 508, 1), "h-508.wasm")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("limits.max_core_instances"), "{err}");
    // The shared pool was not used up: more plugins load, and reloads swap.
    for i in 0..8 {
        let name = format!("more-{i}");
        let bytes = retagged(&std::fs::read(wasm("recorder")).unwrap(), i);
        let outcome = t.host.load_bytes(&name, bytes, "more.wasm").await.unwrap();
        assert!(matches!(outcome, LoadOutcome::Loaded(_)), "{outcome:?}");
    }
    let again = retagged(&std::fs::read(wasm("recorder")).unwrap(), 99);
    let outcome = t.host.load_bytes("good", again, "good.wasm").await.unwrap();
    assert!(matches!(outcome, LoadOutcome::Swapped(..)), "{outcome:?}");
    good_gets_everything(&t, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_too_big_to_compile_is_refused_before_compiling() {
    let t = TestHost::start(
        r#"
        [plugins.h-fns.limits]
        max_functions = 2000
        "#,
        &[("good", "recorder")],
    )
    .await;
    let noop = std::fs::read(wasm("noop")).unwrap();
    let err = t
        .host
        .load_bytes("h-fns", with_many_functions(&noop, 40_000), "h-fns.wasm")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("refused before compiling") && err.contains("limits.max_functions"),
        "{err}"
    );
    good_gets_everything(&t, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_compile_holds_nothing_and_the_newest_version_wins() {
    let t = TestHost::start(
        r#"
        [plugins.slow.limits]
        max_functions = 200000
        "#,
        &[("good", "recorder")],
    )
    .await;
    let noop = std::fs::read(wasm("noop")).unwrap();
    let slow_bytes = with_many_functions(&noop, 60_000);
    let host = t.host.clone();
    let slow = tokio::spawn(async move { host.load_bytes("slow", slow_bytes, "slow.wasm").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // While it compiles, the registry answers and events flow.
    let plugins = t.host.plugins().await;
    assert_eq!(plugins.len(), 1);
    good_gets_everything(&t, 5).await;
    assert!(
        !slow.is_finished(),
        "the slow component compiled too fast to show anything; make it bigger"
    );
    // A newer version of the same plugin, seen after the slow one: it wins, and the
    // slow one is discarded when its compile ends.
    let fast = t
        .host
        .load_bytes("slow", std::fs::read(wasm("noop")).unwrap(), "slow.wasm")
        .await
        .unwrap();
    assert!(matches!(fast, LoadOutcome::Loaded(_)), "{fast:?}");
    let first = slow.await.unwrap().unwrap();
    assert!(matches!(first, LoadOutcome::Superseded), "{first:?}");
    let names: Vec<String> = t.host.plugins().await.into_iter().map(|p| p.name).collect();
    assert_eq!(names, vec!["good", "slow"]);
}

/// A loopback server that accepts connections and never answers; counts those open.
async fn silent_server() -> (u16, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let open = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(0));
    let (o, a) = (open.clone(), accepted.clone());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            o.fetch_add(1, Ordering::SeqCst);
            a.fetch_add(1, Ordering::SeqCst);
            let o = o.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut buf = [0u8; 1024];
                while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {}
                o.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (port, open, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_requests_are_capped_and_end_with_the_call_that_made_them() {
    let (port, open, accepted) = silent_server().await;
    let t = TestHost::start(
        &format!(
            r#"
            [limits]
            max_failures = 2
            [plugins.h-fire]
            allow_http = ["http://127.0.0.1:{port}"]
            config = {{ mode = "fire-and-forget", n = "300", url = "http://127.0.0.1:{port}/x" }}
            [plugins.h-fire-all]
            allow_http = ["http://127.0.0.1:{port}"]
            config = {{ mode = "fire-and-forget", n = "1500", url = "http://127.0.0.1:{port}/x" }}
            "#
        ),
        &[
            ("good", "recorder"),
            ("h-fire", "hostile"),
            ("h-fire-all", "hostile"),
        ],
    )
    .await;
    good_gets_everything(&t, 3).await;
    let s = stats_until(&t.host, "h-fire", "3 events", |s| s.events_delivered == 3).await;
    // `handle` hands the plugin a future either way; beyond 16 in flight the host fails
    // the request at once instead of opening a socket.
    let fired = t.logs.containing("h-fire", "hostile fired ");
    assert_eq!(fired.len(), 3, "{fired:?}");
    assert_eq!(s.crashes, 0, "{s:?}");
    assert_eq!(s.http_refused, (300 - 16) * 3, "{s:?}");
    assert!(s.http_cancelled >= 16, "{s:?}");
    // Every connection was closed when the call that opened it returned.
    assert!(
        eventually(WAIT, || open.load(Ordering::SeqCst) == 0).await,
        "{} connections still open",
        open.load(Ordering::SeqCst)
    );
    // 1500 futures kept in one call are more live handles than the budget allows.
    let s = stats_until(&t.host, "h-fire-all", "quarantine", |s| s.quarantined).await;
    let why = s.last_crash.clone().unwrap_or_default();
    assert!(why.contains("limits.max_handles"), "{why}");
    assert!(
        eventually(WAIT, || open.load(Ordering::SeqCst) == 0).await,
        "{} connections still open after the kill",
        open.load(Ordering::SeqCst)
    );
    // At most 16 per call of either plugin ever reached the server.
    assert!(accepted.load(Ordering::SeqCst) <= 16 * 5, "{accepted:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_whose_restore_fails_or_is_killed_is_refused() {
    let t = TestHost::start(
        r#"
        [plugins.h-restore-fail]
        config = { mode = "restore-fail" }
        [plugins.h-restore-loop]
        config = { mode = "restore-loop" }
        [plugins.h-restore-loop.limits]
        event_deadline_ms = 200
        "#,
        &[
            ("good", "recorder"),
            ("h-restore-fail", "hostile"),
            ("h-restore-loop", "hostile"),
        ],
    )
    .await;
    good_gets_everything(&t, 3).await;
    let hostile = std::fs::read(wasm("hostile")).unwrap();
    for (name, why) in [
        ("h-restore-fail", "restore refused by config"),
        ("h-restore-loop", "deadline"),
    ] {
        let err = t
            .host
            .load_bytes(name, retagged(&hostile, 1), "h.wasm")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("restore()") && err.contains(why),
            "{name}: {err}"
        );
        // The old version keeps serving, its count intact.
        t.host.router().dispatch_event(event("meeting.started", 3));
        assert!(
            eventually(WAIT, || !t
                .logs
                .containing(name, "hostile event n=4")
                .is_empty())
            .await,
            "{name} did not keep serving"
        );
        let s = t.host.stats(name).await.unwrap();
        assert_eq!(
            (s.rejected_versions, s.swaps, s.crashes),
            (1, 0, 0),
            "{s:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_metadata_is_refused_with_a_short_reason() {
    let t = TestHost::start(
        r#"
        [plugins.h-patterns]
        config = { mode = "many-patterns", n = "1000" }
        [plugins.h-huge]
        config = { mode = "many-patterns", n = "1000000" }
        [plugins.h-version]
        config = { mode = "long-version", n = "100000" }
        [plugins.h-media]
        config = { mode = "many-media", n = "1000" }
        [plugins.h-bad]
        config = { mode = "bad-patterns", n = "200" }
        "#,
        &[("good", "recorder")],
    )
    .await;
    let hostile = std::fs::read(wasm("hostile")).unwrap();
    for (name, key) in [
        ("h-patterns", "limits.max_event_patterns"),
        // A million patterns are more than one call may pass to the host at all.
        ("h-huge", "limits.hostcall_bytes"),
        ("h-version", "limits.max_name_bytes"),
        ("h-media", "media kinds"),
    ] {
        let err = t
            .host
            .load_bytes(name, hostile.clone(), "h.wasm")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{name}: {err}");
        assert!(
            err.len() < 400,
            "{name}: the reason quotes the value: {} bytes",
            err.len()
        );
    }
    // Invalid patterns are ignored (summarised in one log line); the valid `*` serves.
    let outcome = t
        .host
        .load_bytes("h-bad", hostile, "h-bad.wasm")
        .await
        .unwrap();
    assert!(matches!(outcome, LoadOutcome::Loaded(_)), "{outcome:?}");
    good_gets_everything(&t, 3).await;
    assert!(
        eventually(WAIT, || t
            .logs
            .containing("h-bad", "hostile event n=3")
            .len()
            == 1)
        .await
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_regular_files_are_loaded_and_a_fifo_cannot_hang_the_host() {
    let t = TestHost::start("", &[("good", "recorder")]).await;
    let dir = t.plugins_dir();
    let fifo = dir.join("fifo.wasm");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let real = t.dir.path().join("elsewhere.wasm");
    std::fs::copy(wasm("recorder"), &real).unwrap();
    std::os::unix::fs::symlink(&real, dir.join("linked.wasm")).unwrap();
    std::fs::create_dir(dir.join("folder.wasm")).unwrap();
    // Were the FIFO opened for reading, this would wait for a writer forever.
    let loaded = tokio::time::timeout(WAIT, t.host.load_dir())
        .await
        .expect("load_dir hung on a FIFO")
        .unwrap();
    assert_eq!(loaded, vec!["linked".to_string()]);
    let err = t.host.load_file(&fifo).await.unwrap_err().to_string();
    assert!(
        err.contains("not a regular file") && err.contains("FIFO"),
        "{err}"
    );
    good_gets_everything(&t, 3).await;
}

/// A loopback server on its own threads that accepts connections and never answers (for
/// a child process, whose connections outlive no runtime of the test's).
fn silent_server_threads() -> (u16, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let a = accepted.clone();
    std::thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(mut socket) = socket else { break };
            a.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                use std::io::Read;
                let mut buf = [0u8; 1024];
                while matches!(socket.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    (port, accepted)
}

/// Peak resident memory (bytes) and open file descriptors of a running process, sampled
/// until it exits.
fn sample_until_exit(child: &mut std::process::Child) -> (u64, usize, std::process::ExitStatus) {
    let pid = child.id();
    let (mut rss, mut fds) = (0u64, 0usize);
    loop {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            let kb = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
                .unwrap_or(0);
            rss = rss.max(kb * 1024);
        }
        if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
            fds = fds.max(dir.count());
        }
        if let Some(status) = child.try_wait().unwrap() {
            return (rss, fds, status);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The whole host in a child process, with a low file-descriptor limit of its own: hostile
/// plugins that hoard host resources and connections cannot take its memory or its
/// descriptors, and the good plugin gets every event.
#[cfg(target_os = "linux")]
#[test]
fn a_host_with_hostile_plugins_stays_within_its_memory_and_descriptors() {
    // The budgets hold with the pooling allocator and with the on-demand fallback.
    for allocator in ["pooling", "on-demand"] {
        hostile_host_in_a_child(allocator);
    }
}

#[cfg(target_os = "linux")]
fn hostile_host_in_a_child(allocator: &str) {
    use std::os::unix::process::CommandExt as _;
    let (port, accepted) = silent_server_threads();
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(wasm("recorder"), plugins.join("good.wasm")).unwrap();
    for name in ["h-hoard", "h-requests", "h-fire", "h-membomb"] {
        std::fs::copy(wasm("hostile"), plugins.join(format!("{name}.wasm"))).unwrap();
    }
    let config = dir.path().join("zoomhost.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            [limits]
            max_failures = 1000
            [plugins.h-hoard]
            config = {{ mode = "fields-hoard", n = "300", size = "15000" }}
            [plugins.h-requests]
            config = {{ mode = "request-hoard" }}
            [plugins.h-membomb]
            config = {{ mode = "membomb" }}
            [plugins.h-fire]
            allow_http = ["http://127.0.0.1:{port}"]
            config = {{ mode = "fire-and-forget", n = "300", url = "http://127.0.0.1:{port}/x" }}
            "#
        ),
    )
    .unwrap();
    let events = 100;
    let lines: String = (0..events)
        .map(|i| {
            format!("{{\"event\":\"meeting.started\",\"event_ts\":{i},\"payload\":{{\"id\":\"e-{i}\"}}}}\n")
        })
        .collect();
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, lines).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_zoomhost"));
    cmd.arg("replay")
        .arg(&file)
        .arg("--config")
        .arg(&config)
        .env("ZOOMHOST_ALLOCATOR", allocator)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    const NOFILE: u64 = 256;
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: NOFILE,
                rlim_max: NOFILE,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap());
    let (rss, fds, status) = sample_until_exit(&mut child);
    let stdout = reader.join().unwrap();
    assert!(status.success(), "{status}\n{stdout}");
    // Each hostile plugin may hold about one instance's bound (~113 MiB with the
    // defaults, mostly never touched); without the budgets the hoarder alone reached
    // gigabytes. Generous: this is a limit, not a benchmark.
    eprintln!("{allocator}: peak RSS {} MiB, peak fds {fds}", rss >> 20);
    assert!(rss < 600 << 20, "{allocator}: peak RSS {} MiB", rss >> 20);
    assert!(
        fds < 128,
        "{allocator}: peak open descriptors {fds} (limit {NOFILE})"
    );
    assert!(accepted.load(Ordering::SeqCst) <= 16 * events);
    let row = |name: &str| -> Vec<String> {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no summary row for {name} in {stdout}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let good = row("good");
    assert_eq!(good[1], events.to_string(), "events delivered: {good:?}");
    assert_eq!(good[2], "0", "events failed: {good:?}");
    assert_eq!(good[3], "0", "events dropped: {good:?}");
    let hoard = row("h-hoard");
    assert_eq!(
        hoard[1],
        events.to_string(),
        "the hoarder got every event: {hoard:?}"
    );
}
