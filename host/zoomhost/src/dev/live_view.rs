//! A live, line-oriented view of a dev session on stdout: readable in a terminal and in
//! a log file alike (no full-screen UI, no cursor tricks).
//!
//! * **Immediate lines** for what matters when it happens: builds ([`DevEvent`]s),
//!   plugins loaded, hot-swapped, rejected, crashed, quarantined or unloaded, failed
//!   deliveries and denied HTTP requests, streams opened and closed, and notes from the
//!   sources.
//! * **A compact status** every ~2 s, only when something changed: events in per
//!   source, open streams, frames per second, and per plugin the events and media
//!   delivered, failures, crashes and drops (with what changed since the last status).
//!
//! ```text
//! 14:03:05 build  building event-logger
//! 14:03:06 build  built event-logger in 1.21 s (86.2 KiB)
//! 14:03:06 build  installed event-logger -> target/zoomhost-dev/plugins/event-logger.wasm
//! 14:03:06 plugin hot-swapped event-logger 0.1.0 -> 0.1.1
//! 14:03:09 stream opened s-1 (meeting abc==) -> event-logger, recorder
//! 14:03:10 status events in 12 (+4): simulator 12 | streams open 1 | 49 frames/s
//!                   event-logger 0.1.1  events 12 (+4)  media 251 (+98)  failed 0  crashes 0  dropped 0
//! ```
//!
//! Plugin activity is read from [`PluginHost::plugins`] (polled every 250 ms); source
//! activity is what the sources report to a [`DevMonitor`]. Colours are used on a
//! terminal unless `NO_COLOR` is set.

use std::collections::{BTreeMap, VecDeque};
use std::io::{IsTerminal as _, Write};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;

use super::DevEvent;
use zoomhost_runtime::{PluginHost, PluginInfo, StatsSnapshot};
use zoomhost_types::EventSource;

/// Notices (stream opened/closed, notes) kept for the view at most; more are counted.
const MAX_NOTICES: usize = 1024;

/// What the sources report for the live view. Cheap to call on hot paths: counters are
/// atomics, and only stream opens, closes and notes take a lock.
#[derive(Debug, Default)]
pub struct DevMonitor {
    /// Events in, per [`EventSource`] (websocket, webhook, replay, simulator).
    events: [AtomicU64; 4],
    frames: AtomicU64,
    streams: Mutex<BTreeMap<String, Instant>>,
    notices: Mutex<VecDeque<Notice>>,
    notices_lost: AtomicU64,
    wake: Notify,
}

/// Counters of a [`DevMonitor`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MonitorSnapshot {
    /// Events from the Zoom event WebSocket.
    pub events_websocket: u64,
    /// Events from webhook deliveries.
    pub events_webhook: u64,
    /// Events from a replay file.
    pub events_replay: u64,
    /// Events from the built-in simulator.
    pub events_simulator: u64,
    /// Streams open now.
    pub open_streams: usize,
    /// Media frames in so far.
    pub frames: u64,
}

impl MonitorSnapshot {
    /// Events in from all sources.
    pub fn events_total(&self) -> u64 {
        self.events_websocket + self.events_webhook + self.events_replay + self.events_simulator
    }

    fn per_source(&self) -> [(&'static str, u64); 4] {
        [
            ("websocket", self.events_websocket),
            ("webhook", self.events_webhook),
            ("replay", self.events_replay),
            ("simulator", self.events_simulator),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Notice {
    StreamOpened {
        stream_id: String,
        meeting: String,
        plugins: Vec<String>,
    },
    StreamClosed {
        stream_id: String,
        reason: String,
        open_for: Option<Duration>,
    },
    Note(String),
}

impl DevMonitor {
    /// A monitor with everything at zero.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// An event came in from `source` (call once per event handed to the router).
    pub fn event_received(&self, source: EventSource) {
        let i = match source {
            EventSource::Websocket => 0,
            EventSource::Webhook => 1,
            EventSource::Replay => 2,
            EventSource::Simulator => 3,
        };
        self.events[i].fetch_add(1, Relaxed);
    }

    /// A media stream opened on `plugins` (what [`zoomhost_runtime::router::MediaStream::plugins`]
    /// returns).
    pub fn stream_opened(&self, stream_id: &str, meeting: &str, plugins: &[impl AsRef<str>]) {
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(stream_id.to_string(), Instant::now());
        self.push(Notice::StreamOpened {
            stream_id: stream_id.to_string(),
            meeting: meeting.to_string(),
            plugins: plugins.iter().map(|p| p.as_ref().to_string()).collect(),
        });
    }

    /// A media stream closed, for `reason` (e.g. `stopped by Zoom`, `meeting ended`).
    pub fn stream_closed(&self, stream_id: &str, reason: &str) {
        let opened = self
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(stream_id);
        self.push(Notice::StreamClosed {
            stream_id: stream_id.to_string(),
            reason: reason.to_string(),
            open_for: opened.map(|t| t.elapsed()),
        });
    }

    /// `n` media frames came in (audio, video, share, transcript, chat).
    pub fn frames(&self, n: u64) {
        self.frames.fetch_add(n, Relaxed);
    }

    /// A line of free text for the view (e.g. `simulator listening on ...`).
    pub fn note(&self, text: impl Into<String>) {
        self.push(Notice::Note(text.into()));
    }

    /// The counters now.
    pub fn snapshot(&self) -> MonitorSnapshot {
        MonitorSnapshot {
            events_websocket: self.events[0].load(Relaxed),
            events_webhook: self.events[1].load(Relaxed),
            events_replay: self.events[2].load(Relaxed),
            events_simulator: self.events[3].load(Relaxed),
            open_streams: self.streams.lock().unwrap_or_else(|p| p.into_inner()).len(),
            frames: self.frames.load(Relaxed),
        }
    }

    fn push(&self, notice: Notice) {
        {
            let mut q = self.notices.lock().unwrap_or_else(|p| p.into_inner());
            if q.len() >= MAX_NOTICES {
                self.notices_lost.fetch_add(1, Relaxed);
                return;
            }
            q.push_back(notice);
        }
        self.wake.notify_one();
    }

    fn take_notices(&self) -> (Vec<Notice>, u64) {
        let notices = self
            .notices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        (notices, self.notices_lost.swap(0, Relaxed))
    }
}

/// How a [`LiveView`] prints.
#[derive(Debug, Clone)]
pub struct ViewOptions {
    /// ANSI colours on the line tags.
    pub color: bool,
    /// Lines as JSON records (`--log-format json`), the same fields as the host's log.
    pub json: bool,
    /// How often a status is printed (when something changed).
    pub status_every: Duration,
    /// How often the host's plugins are polled for changes.
    pub poll_every: Duration,
}

impl Default for ViewOptions {
    /// No colour, status every 2 s, poll every 250 ms.
    fn default() -> Self {
        Self {
            color: false,
            json: false,
            status_every: Duration::from_secs(2),
            poll_every: Duration::from_millis(250),
        }
    }
}

impl ViewOptions {
    /// The defaults, with colour when stdout is a terminal and `NO_COLOR` is not set
    /// (or empty), and JSON lines when the log format is JSON.
    pub fn detect() -> Self {
        Self {
            color: crate::logging::colour_on(std::io::stdout().is_terminal()),
            json: crate::logging::format() == crate::logging::LogFormat::Json,
            ..Self::default()
        }
    }
}

/// The live view; [`spawn`](Self::spawn) it once the host exists.
pub struct LiveView {
    host: Arc<PluginHost>,
    monitor: Arc<DevMonitor>,
    options: ViewOptions,
    out: Box<dyn Write + Send>,
}

impl std::fmt::Debug for LiveView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveView")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// A running [`LiveView`]. [`stop`](Self::stop) it to print what is pending; dropping
/// it stops it at once.
#[derive(Debug)]
pub struct LiveViewTask {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl LiveViewTask {
    /// Prints what is still pending (build events, notices, plugin changes, a last
    /// status if something changed) and stops.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for LiveViewTask {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl LiveView {
    /// A view of `host` and `monitor`, printing to stdout.
    pub fn new(host: Arc<PluginHost>, monitor: Arc<DevMonitor>, options: ViewOptions) -> Self {
        Self {
            host,
            monitor,
            options,
            out: Box::new(std::io::stdout()),
        }
    }

    /// Prints to `out` instead of stdout.
    pub fn with_output(mut self, out: Box<dyn Write + Send>) -> Self {
        self.out = out;
        self
    }

    /// Starts printing: `events` from a [`super::SourceWatcher`] (or any sender), the
    /// monitor's notices, plugin changes and the periodic status.
    pub fn spawn(self, events: mpsc::UnboundedReceiver<DevEvent>) -> LiveViewTask {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(self.run(events, stopped));
        LiveViewTask {
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<DevEvent>,
        mut stopped: oneshot::Receiver<()>,
    ) {
        let mut state = ViewState::default();
        let mut poll = tokio::time::interval(self.options.poll_every);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut status = tokio::time::interval(self.options.status_every);
        status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        // The first tick is immediate: skip it so the first status comes after a period.
        status.tick().await;
        let mut events_open = true;
        loop {
            tokio::select! {
                biased;
                _ = &mut stopped => break,
                event = events.recv(), if events_open => match event {
                    Some(event) => self.print(&dev_event_lines(&event)),
                    None => events_open = false,
                },
                _ = self.monitor.wake.notified() => self.print_notices(),
                _ = poll.tick() => self.poll(&mut state).await,
                _ = status.tick() => self.status(&mut state).await,
            }
        }
        while let Ok(event) = events.try_recv() {
            self.print(&dev_event_lines(&event));
        }
        self.print_notices();
        self.poll(&mut state).await;
        self.status(&mut state).await;
    }

    fn print(&mut self, lines: &[Line]) {
        if lines.is_empty() {
            return;
        }
        let clock = clock(SystemTime::now());
        let mut text = String::new();
        for line in lines {
            if self.options.json {
                let warning = matches!(line.tone, Tone::Warn | Tone::Bad);
                let record =
                    crate::logging::dev_json_line(line.tag, warning, &line.text, &line.detail);
                text.push_str(&record);
            } else {
                text.push_str(&render(line, &clock, self.options.color));
            }
            text.push('\n');
        }
        // A closed stdout (e.g. `| head`) must not stop the host.
        let _ = self
            .out
            .write_all(text.as_bytes())
            .and_then(|()| self.out.flush());
    }

    fn print_notices(&mut self) {
        let (notices, lost) = self.monitor.take_notices();
        let mut lines: Vec<Line> = notices.iter().map(notice_line).collect();
        if lost > 0 {
            lines.push(Line::new(
                "note",
                Tone::Warn,
                format!("{lost} stream notices not shown (too many at once)"),
            ));
        }
        self.print(&lines);
    }

    async fn poll(&mut self, state: &mut ViewState) {
        let rows = rows(self.host.plugins().await);
        let lines = plugin_changes(&state.plugins, &rows);
        state.plugins = rows.into_iter().map(|r| (r.name.clone(), r)).collect();
        self.print(&lines);
    }

    async fn status(&mut self, state: &mut ViewState) {
        self.poll(state).await;
        let now = Status {
            monitor: self.monitor.snapshot(),
            plugins: state.plugins.values().cloned().collect(),
        };
        let at = Instant::now();
        let rate = match state.last_tick {
            Some((t, frames)) => {
                let secs = at.duration_since(t).as_secs_f64();
                if secs > 0.0 {
                    now.monitor.frames.saturating_sub(frames) as f64 / secs
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        state.last_tick = Some((at, now.monitor.frames));
        // Also say when frames stopped flowing (the counts alone no longer change).
        let frames_stopped = state.last_rate >= 0.5 && rate < 0.5;
        if state.last_status.as_ref() == Some(&now) && !frames_stopped {
            return;
        }
        let lines = status_lines(&now, state.last_status.as_ref(), rate);
        self.print(&lines);
        state.last_status = Some(now);
        state.last_rate = rate;
    }
}

#[derive(Default)]
struct ViewState {
    plugins: BTreeMap<String, PluginRow>,
    last_status: Option<Status>,
    /// When the last status tick ran, and the frame count then.
    last_tick: Option<(Instant, u64)>,
    /// Frames per second in the last status printed.
    last_rate: f64,
}

/// One plugin, as the view sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PluginRow {
    pub name: String,
    pub version: String,
    pub events: Vec<String>,
    pub media: Vec<String>,
    pub stats: StatsSnapshot,
    pub queued: usize,
}

fn rows(infos: Vec<PluginInfo>) -> Vec<PluginRow> {
    infos
        .into_iter()
        .map(|i| PluginRow {
            name: i.name,
            version: i.metadata.version,
            events: i.metadata.events,
            media: i
                .metadata
                .media
                .iter()
                .map(|k| k.as_str().to_string())
                .collect(),
            stats: i.stats,
            queued: i.queued,
        })
        .collect()
}

/// Everything a status line shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    pub monitor: MonitorSnapshot,
    pub plugins: Vec<PluginRow>,
}

/// How a line is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tone {
    Info,
    Good,
    Warn,
    Bad,
}

/// One printed entry: a tag, a message, and indented detail lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    pub tag: &'static str,
    pub tone: Tone,
    pub text: String,
    pub detail: Vec<String>,
}

impl Line {
    pub(crate) fn new(tag: &'static str, tone: Tone, text: impl Into<String>) -> Self {
        Self {
            tag,
            tone,
            text: text.into(),
            detail: Vec::new(),
        }
    }

    fn with_detail(mut self, detail: impl IntoIterator<Item = String>) -> Self {
        self.detail.extend(detail);
        self
    }
}

/// Width of `HH:MM:SS `.
const CLOCK_WIDTH: usize = 9;
/// Width of the tag column (`plugin `).
const TAG_WIDTH: usize = 7;

/// `line` as text (detail lines indented under the message), `clock` first.
pub(crate) fn render(line: &Line, clock: &str, color: bool) -> String {
    let tag = format!("{:<width$}", line.tag, width = TAG_WIDTH - 1);
    let tag = if color {
        let code = match line.tone {
            Tone::Info => "36",
            Tone::Good => "32",
            Tone::Warn => "33",
            Tone::Bad => "1;31",
        };
        format!("\x1b[{code}m{tag}\x1b[0m")
    } else {
        tag
    };
    let mut out = format!("{clock} {tag} {}", line.text);
    let indent = " ".repeat(CLOCK_WIDTH + TAG_WIDTH + 2);
    for d in &line.detail {
        out.push('\n');
        if !d.is_empty() {
            out.push_str(&indent);
            out.push_str(d);
        }
    }
    out
}

/// `HH:MM:SS` (UTC, like the default log timestamps).
pub(crate) fn clock(now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

fn size(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if b < KIB {
        format!("{bytes} B")
    } else if b < KIB * KIB {
        format!("{:.1} KiB", b / KIB)
    } else {
        format!("{:.1} MiB", b / KIB / KIB)
    }
}

fn duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// The lines for a [`DevEvent`].
pub(crate) fn dev_event_lines(event: &DevEvent) -> Vec<Line> {
    let line = match event {
        DevEvent::BuildStarted { krate } => {
            Line::new("build", Tone::Info, format!("building {krate}"))
        }
        DevEvent::Built {
            krate,
            duration: took,
            bytes,
        } => Line::new(
            "build",
            Tone::Good,
            format!("built {krate} in {} ({})", duration(*took), size(*bytes)),
        ),
        DevEvent::BuildFailed { krate, error } => Line::new(
            "build",
            Tone::Bad,
            format!("{krate} FAILED to build; the running version keeps serving:"),
        )
        .with_detail(error.lines().map(str::to_string)),
        DevEvent::Installed { krate, path } => Line::new(
            "build",
            Tone::Good,
            format!("installed {krate} -> {}", path.display()),
        ),
        DevEvent::Unchanged { krate } => Line::new(
            "build",
            Tone::Info,
            format!("{krate} built to the same component; nothing to swap"),
        ),
        DevEvent::Removed { krate, path } => Line::new(
            "build",
            Tone::Warn,
            format!("{krate}'s crate folder is gone: removed {}", path.display()),
        ),
        DevEvent::WatchError { message } => Line::new("watch", Tone::Warn, message.clone()),
    };
    vec![line]
}

fn notice_line(notice: &Notice) -> Line {
    match notice {
        Notice::StreamOpened {
            stream_id,
            meeting,
            plugins,
        } => {
            let to = if plugins.is_empty() {
                "no plugin subscribed".to_string()
            } else {
                plugins.join(", ")
            };
            Line::new(
                "stream",
                Tone::Info,
                format!("opened {stream_id} (meeting {meeting}) -> {to}"),
            )
        }
        Notice::StreamClosed {
            stream_id,
            reason,
            open_for,
        } => {
            let after = open_for
                .map(|d| format!(" after {}", duration(d)))
                .unwrap_or_default();
            Line::new(
                "stream",
                Tone::Info,
                format!("closed {stream_id}{after}: {reason}"),
            )
        }
        Notice::Note(text) => Line::new("note", Tone::Info, text.clone()),
    }
}

fn failures(s: &StatsSnapshot) -> u64 {
    s.events_failed + s.media_failed
}

fn drops(s: &StatsSnapshot) -> u64 {
    s.events_dropped + s.audio_dropped + s.media_dropped
}

/// Longest reason quoted in a line; the full text is in the log.
const MAX_REASON_CHARS: usize = 240;

/// ": <reason>" for a line, on one line and shortened; empty when there is none.
fn because(reason: Option<&str>) -> String {
    let Some(reason) = reason.map(str::trim).filter(|r| !r.is_empty()) else {
        return String::new();
    };
    let flat = reason.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= MAX_REASON_CHARS {
        return format!(": {flat}");
    }
    let cut: String = flat.chars().take(MAX_REASON_CHARS).collect();
    format!(": {cut}... (full text in the log)")
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// What changed between two polls of the host's plugins, as immediate lines.
pub(crate) fn plugin_changes(prev: &BTreeMap<String, PluginRow>, now: &[PluginRow]) -> Vec<Line> {
    let mut lines = Vec::new();
    for row in now {
        let name = &row.name;
        let Some(old) = prev.get(name) else {
            let media = if row.media.is_empty() {
                "none".to_string()
            } else {
                row.media.join(", ")
            };
            lines.push(Line::new(
                "plugin",
                Tone::Good,
                format!(
                    "loaded {name} {} (events: {}; media: {media})",
                    row.version,
                    row.events.join(", ")
                ),
            ));
            continue;
        };
        let (a, b) = (&old.stats, &row.stats);
        if b.swaps > a.swaps {
            let what = if old.version == row.version {
                format!("hot-swapped {name} (version {} again)", row.version)
            } else {
                format!("hot-swapped {name} {} -> {}", old.version, row.version)
            };
            lines.push(Line::new("plugin", Tone::Good, what));
        }
        if b.rejected_versions > a.rejected_versions {
            lines.push(Line::new(
                "plugin",
                Tone::Bad,
                format!(
                    "REJECTED a new version of {name}; {} keeps serving{}",
                    row.version,
                    because(b.last_rejection.as_deref())
                ),
            ));
        }
        if b.crashes > a.crashes {
            lines.push(Line::new(
                "plugin",
                Tone::Bad,
                format!(
                    "{name} crashed: {} (instance restarted; {} so far){}",
                    plural(b.crashes - a.crashes, "instance killed", "instances killed"),
                    plural(b.crashes, "crash", "crashes"),
                    because(b.last_crash.as_deref())
                ),
            ));
        }
        if b.quarantined && !a.quarantined {
            lines.push(Line::new(
                "plugin",
                Tone::Bad,
                format!(
                    "{name} QUARANTINED after repeated failures: its deliveries are dropped until a new version is installed"
                ),
            ));
        } else if a.quarantined && !b.quarantined {
            lines.push(Line::new(
                "plugin",
                Tone::Good,
                format!("{name} is out of quarantine"),
            ));
        }
        let failed = failures(b).saturating_sub(failures(a));
        if failed > 0 {
            lines.push(Line::new(
                "plugin",
                Tone::Warn,
                format!(
                    "{name}: {} failed (events {}, media {}; {} so far)",
                    plural(failed, "delivery", "deliveries"),
                    b.events_failed.saturating_sub(a.events_failed),
                    b.media_failed.saturating_sub(a.media_failed),
                    failures(b)
                ),
            ));
        }
        let denied = b.http_denied.saturating_sub(a.http_denied);
        if denied > 0 {
            lines.push(Line::new(
                "plugin",
                Tone::Warn,
                format!(
                    "{name}: {} denied (grant origins in [plugins.{name}] allow_http)",
                    plural(denied, "outbound HTTP request", "outbound HTTP requests")
                ),
            ));
        }
    }
    for name in prev.keys() {
        if !now.iter().any(|r| &r.name == name) {
            lines.push(Line::new("plugin", Tone::Warn, format!("unloaded {name}")));
        }
    }
    lines
}

fn count(now: u64, before: Option<u64>) -> String {
    match before {
        Some(b) if now > b => format!("{now} (+{})", now - b),
        _ => now.to_string(),
    }
}

/// The periodic status: a totals line with one detail line per plugin, and `(+N)` for
/// what grew since `prev`.
pub(crate) fn status_lines(now: &Status, prev: Option<&Status>, frames_per_s: f64) -> Vec<Line> {
    let m = &now.monitor;
    let sources: Vec<String> = m
        .per_source()
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    let mut text = format!(
        "events in {}",
        count(m.events_total(), prev.map(|p| p.monitor.events_total()))
    );
    if !sources.is_empty() {
        text.push_str(&format!(": {}", sources.join(", ")));
    }
    text.push_str(&format!(" | streams open {}", m.open_streams));
    text.push_str(&format!(" | {frames_per_s:.0} frames/s"));
    if now.plugins.is_empty() {
        text.push_str(" | no plugins loaded");
    }
    let name_width = now
        .plugins
        .iter()
        .map(|p| p.name.len() + 1 + p.version.len())
        .max()
        .unwrap_or(0);
    let detail = now.plugins.iter().map(|p| {
        let before = prev
            .and_then(|s| s.plugins.iter().find(|q| q.name == p.name))
            .map(|q| &q.stats);
        let s = &p.stats;
        let mut line = format!(
            "{:<name_width$}  events {}  media {}  failed {}  crashes {}  dropped {}",
            format!("{} {}", p.name, p.version),
            count(s.events_delivered, before.map(|b| b.events_delivered)),
            count(s.media_delivered, before.map(|b| b.media_delivered)),
            count(failures(s), before.map(failures)),
            count(s.crashes, before.map(|b| b.crashes)),
            count(drops(s), before.map(drops)),
        );
        if p.queued > 0 {
            line.push_str(&format!("  queued {}", p.queued));
        }
        if s.quarantined {
            line.push_str("  QUARANTINED");
        }
        line
    });
    vec![Line::new("status", Tone::Info, text).with_detail(detail)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, version: &str, stats: StatsSnapshot) -> PluginRow {
        PluginRow {
            name: name.into(),
            version: version.into(),
            events: vec!["*".into()],
            media: vec!["audio".into(), "transcript".into()],
            stats,
            queued: 0,
        }
    }

    fn texts(lines: &[Line]) -> Vec<String> {
        lines.iter().map(|l| l.text.clone()).collect()
    }

    #[test]
    fn status_shows_totals_per_source_and_per_plugin_counts_with_growth() {
        let before = Status {
            monitor: MonitorSnapshot {
                events_simulator: 10,
                open_streams: 1,
                frames: 100,
                ..Default::default()
            },
            plugins: vec![
                row(
                    "event-logger",
                    "0.1.0",
                    StatsSnapshot {
                        events_delivered: 10,
                        media_delivered: 100,
                        ..Default::default()
                    },
                ),
                row("rec", "2.0.0", StatsSnapshot::default()),
            ],
        };
        let mut now = before.clone();
        now.monitor.events_simulator = 12;
        now.monitor.events_webhook = 1;
        now.monitor.frames = 200;
        now.plugins[0].stats.events_delivered = 13;
        now.plugins[0].stats.media_delivered = 200;
        now.plugins[1].stats.events_failed = 2;
        now.plugins[1].stats.media_failed = 1;
        now.plugins[1].stats.audio_dropped = 4;
        now.plugins[1].stats.crashes = 1;
        now.plugins[1].stats.quarantined = true;
        now.plugins[1].queued = 7;
        let lines = status_lines(&now, Some(&before), 49.6);
        assert_eq!(lines.len(), 1);
        assert_eq!(
            lines[0].text,
            "events in 13 (+3): webhook 1, simulator 12 | streams open 1 | 50 frames/s"
        );
        assert_eq!(
            lines[0].detail,
            [
                "event-logger 0.1.0  events 13 (+3)  media 200 (+100)  failed 0  crashes 0  dropped 0",
                "rec 2.0.0           events 0  media 0  failed 3 (+3)  crashes 1 (+1)  dropped 4 (+4)  queued 7  QUARANTINED",
            ]
        );
        // The first status has no growth to show.
        let first = status_lines(&before, None, 0.0);
        assert_eq!(
            first[0].text,
            "events in 10: simulator 10 | streams open 1 | 0 frames/s"
        );
        let empty = Status {
            monitor: MonitorSnapshot::default(),
            plugins: vec![],
        };
        assert_eq!(
            status_lines(&empty, None, 0.0)[0].text,
            "events in 0 | streams open 0 | 0 frames/s | no plugins loaded"
        );
    }

    #[test]
    fn plugin_changes_become_immediate_lines() {
        let base = row("rec", "0.1.0", StatsSnapshot::default());
        let prev: BTreeMap<String, PluginRow> = [
            ("rec".to_string(), base.clone()),
            (
                "gone".to_string(),
                row("gone", "1.0.0", StatsSnapshot::default()),
            ),
        ]
        .into();
        let mut now = base.clone();
        now.version = "0.2.0".into();
        now.stats = StatsSnapshot {
            swaps: 1,
            rejected_versions: 1,
            crashes: 2,
            quarantined: true,
            events_failed: 3,
            media_failed: 1,
            http_denied: 1,
            last_rejection: Some(
                "plugin world version 0.2.0 does not match\n  the host's 0.1.0".into(),
            ),
            last_crash: Some("while handling meeting.started: deadline exceeded".into()),
            ..Default::default()
        };
        let fresh = row("new", "1.2.3", StatsSnapshot::default());
        let lines = plugin_changes(&prev, &[fresh, now]);
        assert_eq!(
            texts(&lines),
            [
                "loaded new 1.2.3 (events: *; media: audio, transcript)",
                "hot-swapped rec 0.1.0 -> 0.2.0",
                "REJECTED a new version of rec; 0.2.0 keeps serving: plugin world version 0.2.0 does not match the host's 0.1.0",
                "rec crashed: 2 instances killed (instance restarted; 2 crashes so far): while handling meeting.started: deadline exceeded",
                "rec QUARANTINED after repeated failures: its deliveries are dropped until a new version is installed",
                "rec: 4 deliveries failed (events 3, media 1; 4 so far)",
                "rec: 1 outbound HTTP request denied (grant origins in [plugins.rec] allow_http)",
                "unloaded gone",
            ]
        );
        assert_eq!(lines[3].tone, Tone::Bad);
        // Nothing changed: nothing to say.
        let same: Vec<PluginRow> = prev.values().cloned().collect();
        assert!(plugin_changes(&prev, &same).is_empty());
        // Same version swapped again (e.g. config values changed).
        let mut again = base.clone();
        again.stats.swaps = 1;
        assert_eq!(
            texts(&plugin_changes(&prev, &[again])),
            ["hot-swapped rec (version 0.1.0 again)", "unloaded gone"]
        );
    }

    #[test]
    fn build_events_render_with_clock_tag_and_indented_compiler_output() {
        let failed = DevEvent::BuildFailed {
            krate: "event-logger".into(),
            error:
                "error[E0308]: mismatched types\n --> plugins/event-logger/src/lib.rs:3:5\n\nmore"
                    .into(),
        };
        let text = render(&dev_event_lines(&failed)[0], "14:03:05", false);
        assert_eq!(
            text,
            "14:03:05 build  event-logger FAILED to build; the running version keeps serving:\n\
             \x20                 error[E0308]: mismatched types\n\
             \x20                  --> plugins/event-logger/src/lib.rs:3:5\n\
             \n\
             \x20                 more"
        );
        let built = DevEvent::Built {
            krate: "event-logger".into(),
            duration: Duration::from_millis(1840),
            bytes: 88_313,
        };
        assert_eq!(
            render(&dev_event_lines(&built)[0], "14:03:06", false),
            "14:03:06 build  built event-logger in 1.84 s (86.2 KiB)"
        );
        assert_eq!(
            render(&dev_event_lines(&built)[0], "14:03:06", true),
            "14:03:06 \x1b[32mbuild \x1b[0m built event-logger in 1.84 s (86.2 KiB)"
        );
        let installed = DevEvent::Installed {
            krate: "event-logger".into(),
            path: "/p/event-logger.wasm".into(),
        };
        assert_eq!(
            texts(&dev_event_lines(&installed)),
            ["installed event-logger -> /p/event-logger.wasm"]
        );
    }

    #[test]
    fn reasons_are_one_line_and_shortened() {
        assert_eq!(because(None), "");
        assert_eq!(because(Some("  \n ")), "");
        assert_eq!(because(Some("trap:\n  unreachable")), ": trap: unreachable");
        let long = "y".repeat(MAX_REASON_CHARS + 10);
        let quoted = because(Some(&long));
        assert!(quoted.ends_with("... (full text in the log)"), "{quoted}");
        assert_eq!(quoted.matches('y').count(), MAX_REASON_CHARS);
    }

    #[test]
    fn clock_is_utc_time_of_day() {
        let t = UNIX_EPOCH + Duration::from_secs(19_000 * 86_400 + 13 * 3600 + 4 * 60 + 5);
        assert_eq!(clock(t), "13:04:05");
    }

    #[test]
    fn monitor_counts_per_source_and_queues_stream_notices() {
        let m = DevMonitor::new();
        m.event_received(EventSource::Simulator);
        m.event_received(EventSource::Simulator);
        m.event_received(EventSource::Webhook);
        m.frames(50);
        m.stream_opened("s1", "meeting==", &["event-logger", "rec"]);
        m.stream_opened("s2", "other==", &[] as &[&str]);
        m.stream_closed("s1", "stopped by Zoom");
        let snap = m.snapshot();
        assert_eq!(
            (
                snap.events_simulator,
                snap.events_webhook,
                snap.events_total()
            ),
            (2, 1, 3)
        );
        assert_eq!((snap.open_streams, snap.frames), (1, 50));
        let (notices, lost) = m.take_notices();
        assert_eq!(lost, 0);
        let lines: Vec<String> = notices.iter().map(|n| notice_line(n).text).collect();
        assert_eq!(
            lines[0],
            "opened s1 (meeting meeting==) -> event-logger, rec"
        );
        assert_eq!(
            lines[1],
            "opened s2 (meeting other==) -> no plugin subscribed"
        );
        assert!(lines[2].starts_with("closed s1 after "), "{}", lines[2]);
        assert!(lines[2].ends_with(": stopped by Zoom"), "{}", lines[2]);
        for i in 0..MAX_NOTICES + 5 {
            m.note(format!("n{i}"));
        }
        let (notices, lost) = m.take_notices();
        assert_eq!((notices.len(), lost), (MAX_NOTICES, 5));
    }
}
