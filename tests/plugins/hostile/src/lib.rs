//! `hostile`: a test plugin that misbehaves in the way config key `mode` picks, so host
//! tests can check containment. Tests copy the one `.wasm` under several names with
//! different config.
//!
//! | `mode` | behaviour |
//! | --- | --- |
//! | `ok` (default) | logs `hostile event n=<k>` (info) per event |
//! | `loop` | spins forever in `handle-event` |
//! | `membomb` | in `handle-event`, allocates and fills 1 MiB chunks until allocation fails (traps) |
//! | `trap-nth` | traps (`unreachable`) on event number `n` (config, default 3); otherwise as `ok` |
//! | `panic-media` | panics in the media session's `on-audio` on the first frame |
//! | `http-ungranted` | per event, POSTs JSON to config `url` (default `http://127.0.0.1:9/`) and logs (warn) `hostile http denied=<bool> err=<error>` or `hostile http status=<status>` |
//! | `log-flood` | per event, logs 100 000 info lines of 1 KiB |
//! | `init-fail` | `init` returns `Err("init refused by config")` |
//!
//! An unknown mode makes `init` fail with `unknown hostile mode <mode>`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use zoomhost_sdk::{
    config, debug, http, info, warn, AudioFrame, Event, MediaKind, MediaSession, Metadata, Plugin,
    StreamInfo,
};

/// Events received by this instance.
static EVENTS: AtomicU64 = AtomicU64::new(0);

/// What `membomb` allocates; a static so the allocations stay live and observable.
static HOARD: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Ok,
    Loop,
    MemBomb,
    TrapNth,
    PanicMedia,
    HttpUngranted,
    LogFlood,
    InitFail,
}

fn mode() -> Result<Mode, String> {
    Ok(match config::get("mode").as_deref().map(str::trim) {
        None | Some("" | "ok") => Mode::Ok,
        Some("loop") => Mode::Loop,
        Some("membomb") => Mode::MemBomb,
        Some("trap-nth") => Mode::TrapNth,
        Some("panic-media") => Mode::PanicMedia,
        Some("http-ungranted") => Mode::HttpUngranted,
        Some("log-flood") => Mode::LogFlood,
        Some("init-fail") => Mode::InitFail,
        Some(other) => return Err(format!("unknown hostile mode {other}")),
    })
}

struct Hostile;

impl Plugin for Hostile {
    type Session = Session;

    fn metadata() -> Metadata {
        Metadata::new("hostile", env!("CARGO_PKG_VERSION"))
            .events(["*"])
            .media([MediaKind::Audio, MediaKind::Transcript])
            .config_keys(["mode", "n", "url"])
    }

    fn init() -> Result<(), String> {
        match mode()? {
            Mode::InitFail => Err("init refused by config".to_string()),
            _ => Ok(()),
        }
    }

    fn handle_event(_event: Event) -> Result<(), String> {
        let k = EVENTS.fetch_add(1, Ordering::Relaxed) + 1;
        match mode()? {
            Mode::Loop => spin(),
            Mode::MemBomb => membomb(),
            Mode::TrapNth if k == trap_at() => trap(),
            Mode::HttpUngranted => call_out(k),
            Mode::LogFlood => flood(),
            _ => info!("hostile event n={k}"),
        }
        Ok(())
    }
}

/// A loop the optimizer cannot remove.
fn spin() -> ! {
    let mut x = 0u64;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

/// Allocates and writes 1 MiB chunks forever; the allocator's failure aborts (traps).
fn membomb() {
    let mut hoard = HOARD.lock().unwrap();
    loop {
        hoard.push(std::hint::black_box(vec![0xA5; 1 << 20]));
        if hoard.len().is_multiple_of(16) {
            debug!("hostile membomb mib={}", hoard.len());
        }
    }
}

/// Config `n`, default 3.
fn trap_at() -> u64 {
    config::get("n").map_or(3, |n| n.trim().parse().expect("config `n`"))
}

#[cfg(target_arch = "wasm32")]
fn trap() -> ! {
    core::arch::wasm32::unreachable()
}

#[cfg(not(target_arch = "wasm32"))]
fn trap() -> ! {
    panic!("hostile trap")
}

fn call_out(k: u64) {
    let url = config::get_or("url", "http://127.0.0.1:9/");
    let body = zoomhost_sdk::serde_json::json!({ "hostile": k });
    match http::post_json(&url, &[], &body) {
        Ok(response) => warn!("hostile http status={}", response.status),
        Err(err) => warn!("hostile http denied={} err={err}", err.is_denied()),
    }
}

/// 100 000 lines of exactly 1 KiB each.
fn flood() {
    const LINES: usize = 100_000;
    const LINE_BYTES: usize = 1024;
    let padding = "x".repeat(LINE_BYTES);
    for i in 0..LINES {
        let mut line = format!("hostile flood {i:06} ");
        line.push_str(&padding[line.len()..]);
        zoomhost_sdk::log::info(&line);
    }
}

/// A media session that panics on the first audio frame in `panic-media` mode and
/// ignores everything otherwise.
struct Session {
    panic_on_audio: bool,
}

impl MediaSession for Session {
    fn open(_info: StreamInfo) -> Self {
        Session {
            panic_on_audio: mode() == Ok(Mode::PanicMedia),
        }
    }

    fn on_audio(&mut self, _frame: AudioFrame) -> Result<(), String> {
        if self.panic_on_audio {
            panic!("hostile panic in on-audio");
        }
        Ok(())
    }
}

zoomhost_sdk::export_plugin!(Hostile);
