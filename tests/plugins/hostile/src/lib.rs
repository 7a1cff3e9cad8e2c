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
//! | `fields-hoard` | per event, creates `n` (default 200) `wasi:http` `fields`, each with one header `x-hoard` of `size` (default 15 000) bytes of `a`, keeps them all forever and logs (info) `hostile hoard fields=<kept so far>`; a header error is logged (warn) as `hostile hoard error=<error>` and the event still succeeds |
//! | `request-hoard` | per event, creates `outgoing-request`s (each with new empty `fields`) forever, keeping them all and logging (debug) every 10 000; never returns |
//! | `fire-and-forget` | per event, starts `n` (default 1500) `GET`s to config `url` (default `http://127.0.0.1:9/`) with `outgoing-handler.handle`, never awaits them, keeps every response future forever and logs (warn) `hostile fired ok=<ok> refused=<err> first_err=<error or none>` |
//! | `restore-loop` | `restore` spins forever; otherwise as `ok` |
//! | `restore-fail` | `restore` returns `Err("restore refused by config")`; otherwise as `ok` |
//! | `many-patterns` | `metadata` declares `n` (default 1000) event patterns `p<i>.*` plus `*`; otherwise as `ok` |
//! | `bad-patterns` | `metadata` declares `n` (default 1000) invalid event patterns `a*b<i>` plus `*`; otherwise as `ok` |
//! | `long-version` | the metadata version is `n` (default 1000) bytes of `9`; otherwise as `ok` |
//! | `long-name` | the metadata name is `n` (default 1000) bytes of `x`; otherwise as `ok` |
//! | `many-media` | the metadata media list is `audio` `n` (default 1000) times; otherwise as `ok` |
//!
//! In every mode `snapshot` returns the number of events received as 8 little-endian
//! bytes, and `restore` (outside `restore-loop` and `restore-fail`) adds such a count to
//! its own and logs (info) `hostile restored n=<count>`.
//!
//! An unknown mode makes `init` fail with `unknown hostile mode <mode>`.

use std::fmt::Debug;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use zoomhost_sdk::bindings::wasi::http::outgoing_handler;
use zoomhost_sdk::bindings::wasi::http::types::{
    Fields, FutureIncomingResponse, OutgoingRequest, Scheme,
};
use zoomhost_sdk::{
    config, debug, http, info, warn, AudioFrame, Event, MediaKind, MediaSession, Metadata, Plugin,
    StreamInfo,
};

/// Events received by this instance.
static EVENTS: AtomicU64 = AtomicU64::new(0);

/// What `membomb` allocates; a static so the allocations stay live and observable.
static HOARD: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// What `fields-hoard` creates; never dropped.
static FIELDS: Mutex<Vec<Fields>> = Mutex::new(Vec::new());

/// What `request-hoard` creates; never dropped.
static REQUESTS: Mutex<Vec<OutgoingRequest>> = Mutex::new(Vec::new());

/// The response futures `fire-and-forget` never awaits; never dropped.
static FUTURES: Mutex<Vec<FutureIncomingResponse>> = Mutex::new(Vec::new());

/// The misbehaviour picked by config key `mode`.
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
    FieldsHoard,
    RequestHoard,
    FireAndForget,
    RestoreLoop,
    RestoreFail,
    ManyPatterns,
    BadPatterns,
    LongVersion,
    LongName,
    ManyMedia,
}

/// Reads config key `mode`; an unknown value is an error.
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
        Some("fields-hoard") => Mode::FieldsHoard,
        Some("request-hoard") => Mode::RequestHoard,
        Some("fire-and-forget") => Mode::FireAndForget,
        Some("restore-loop") => Mode::RestoreLoop,
        Some("restore-fail") => Mode::RestoreFail,
        Some("many-patterns") => Mode::ManyPatterns,
        Some("bad-patterns") => Mode::BadPatterns,
        Some("long-version") => Mode::LongVersion,
        Some("long-name") => Mode::LongName,
        Some("many-media") => Mode::ManyMedia,
        Some(other) => return Err(format!("unknown hostile mode {other}")),
    })
}

/// The plugin.
struct Hostile;

impl Plugin for Hostile {
    type Session = Session;

    /// Name, version, patterns and media; oversized or invalid in the metadata modes.
    fn metadata() -> Metadata {
        let metadata = Metadata::new("hostile", env!("CARGO_PKG_VERSION"))
            .events(["*"])
            .media([MediaKind::Audio, MediaKind::Transcript])
            .config_keys(["mode", "n", "url", "size"]);
        let n = || config_num("n", 1000usize);
        let patterns = |pattern: fn(usize) -> String| (0..n()).map(pattern).chain(["*".into()]);
        match mode() {
            Ok(Mode::ManyPatterns) => metadata.events(patterns(|i| format!("p{i}.*"))),
            Ok(Mode::BadPatterns) => metadata.events(patterns(|i| format!("a*b{i}"))),
            Ok(Mode::LongVersion) => Metadata {
                version: "9".repeat(n()),
                ..metadata
            },
            Ok(Mode::LongName) => Metadata {
                name: "x".repeat(n()),
                ..metadata
            },
            Ok(Mode::ManyMedia) => metadata.media(std::iter::repeat_n(MediaKind::Audio, n())),
            _ => metadata,
        }
    }

    /// Fails in `init-fail` mode and for an unknown mode.
    fn init() -> Result<(), String> {
        match mode()? {
            Mode::InitFail => Err("init refused by config".to_string()),
            _ => Ok(()),
        }
    }

    /// Counts the event and misbehaves as the mode says.
    fn handle_event(_event: Event) -> Result<(), String> {
        let k = EVENTS.fetch_add(1, Ordering::Relaxed) + 1;
        match mode()? {
            Mode::Loop => spin(),
            Mode::MemBomb => membomb(),
            Mode::TrapNth if k == trap_at() => trap(),
            Mode::HttpUngranted => call_out(k),
            Mode::LogFlood => flood(),
            Mode::FieldsHoard => hoard_fields(),
            Mode::RequestHoard => hoard_requests(),
            Mode::FireAndForget => fire_and_forget()?,
            _ => info!("hostile event n={k}"),
        }
        Ok(())
    }

    /// The events received so far, as 8 little-endian bytes.
    fn snapshot() -> Option<Vec<u8>> {
        Some(EVENTS.load(Ordering::Relaxed).to_le_bytes().to_vec())
    }

    /// Spins or fails in the restore modes; otherwise adds the snapshot's count.
    fn restore(state: Vec<u8>) -> Result<(), String> {
        match mode()? {
            Mode::RestoreLoop => spin(),
            Mode::RestoreFail => Err("restore refused by config".to_string()),
            _ => {
                let bytes = <[u8; 8]>::try_from(state.as_slice())
                    .map_err(|_| format!("snapshot is {} bytes, want 8", state.len()))?;
                let n = u64::from_le_bytes(bytes);
                EVENTS.fetch_add(n, Ordering::Relaxed);
                info!("hostile restored n={n}");
                Ok(())
            }
        }
    }
}

/// Config `key` parsed as a number, or `default` when unset; panics when unparsable.
fn config_num<T>(key: &str, default: T) -> T
where
    T: FromStr,
    T::Err: Debug,
{
    config::get(key).map_or(default, |v| {
        v.trim()
            .parse()
            .unwrap_or_else(|err| panic!("config `{key}`: {err:?}"))
    })
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

/// Traps with `unreachable`.
#[cfg(target_arch = "wasm32")]
fn trap() -> ! {
    core::arch::wasm32::unreachable()
}

/// Stands in for the trap off wasm.
#[cfg(not(target_arch = "wasm32"))]
fn trap() -> ! {
    panic!("hostile trap")
}

/// POSTs to config `url` and logs how it went.
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

/// Creates `n` header `fields` of one `size`-byte header each and keeps them forever.
fn hoard_fields() {
    let n = config_num("n", 200usize);
    let value = vec![b'a'; config_num("size", 15_000usize)];
    let mut hoard = FIELDS.lock().unwrap();
    for _ in 0..n {
        let fields = Fields::new();
        if let Err(err) = fields.append("x-hoard", &value) {
            warn!("hostile hoard error={err:?}");
            return;
        }
        hoard.push(fields);
    }
    info!("hostile hoard fields={}", hoard.len());
}

/// Creates outgoing requests forever, keeping them all; the host has to kill it.
fn hoard_requests() -> ! {
    let mut hoard = REQUESTS.lock().unwrap();
    loop {
        hoard.push(OutgoingRequest::new(Fields::new()));
        if hoard.len().is_multiple_of(10_000) {
            debug!("hostile request-hoard requests={}", hoard.len());
        }
    }
}

/// Starts `n` `GET`s to config `url` without awaiting any; keeps every future forever.
fn fire_and_forget() -> Result<(), String> {
    let url = config::get_or("url", "http://127.0.0.1:9/");
    let (scheme, authority, path) = split_url(&url)?;
    let n = config_num("n", 1500usize);
    let (mut ok, mut refused, mut first_err) = (0usize, 0usize, None);
    let mut futures = FUTURES.lock().unwrap();
    for _ in 0..n {
        let request = OutgoingRequest::new(Fields::new());
        request
            .set_scheme(Some(&scheme))
            .map_err(|()| "scheme rejected")?;
        request
            .set_authority(Some(&authority))
            .map_err(|()| "authority rejected")?;
        request
            .set_path_with_query(Some(&path))
            .map_err(|()| "path rejected")?;
        match outgoing_handler::handle(request, None) {
            Ok(future) => {
                ok += 1;
                futures.push(future);
            }
            Err(err) => {
                refused += 1;
                first_err.get_or_insert(err);
            }
        }
    }
    let first_err = first_err.map_or_else(|| "none".to_string(), |err| format!("{err:?}"));
    warn!("hostile fired ok={ok} refused={refused} first_err={first_err}");
    Ok(())
}

/// Splits `scheme://authority/path?query` into scheme, authority and path-with-query
/// (`/` when empty).
fn split_url(url: &str) -> Result<(Scheme, String, String), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("url {url:?} has no scheme"))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_string()),
    };
    let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let path = match path.chars().next() {
        None => "/".to_string(),
        Some('?') => format!("/{path}"),
        Some(_) => path.to_string(),
    };
    Ok((scheme, authority.to_string(), path))
}

/// A media session that panics on the first audio frame in `panic-media` mode and
/// ignores everything otherwise.
struct Session {
    panic_on_audio: bool,
}

impl MediaSession for Session {
    /// Reads the mode once per stream.
    fn open(_info: StreamInfo) -> Self {
        Session {
            panic_on_audio: mode() == Ok(Mode::PanicMedia),
        }
    }

    /// Panics in `panic-media` mode.
    fn on_audio(&mut self, _frame: AudioFrame) -> Result<(), String> {
        if self.panic_on_audio {
            panic!("hostile panic in on-audio");
        }
        Ok(())
    }
}

zoomhost_sdk::export_plugin!(Hostile);
