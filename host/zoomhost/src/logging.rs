//! The host's own log: what `run`, `dev`, `bench` and the other commands write about
//! themselves and their plugins, through `tracing`.
//!
//! Two formats ([`LogFormat`], chosen by `--log-format` or `ZOOMHOST_LOG_FORMAT`):
//!
//! - **text**: one line per record on stderr; ANSI colour only when stderr is a terminal
//!   and `NO_COLOR` is not set, so a log file or a journal never gets escape codes.
//! - **json**: one JSON object per line with stable field names ([`JsonLines`]):
//!   `time` (RFC 3339, UTC), `level` (lower case), `target`, `message`, then the record's
//!   own fields under their names (`plugin` and `stream` where the record names one).
//!
//! `zoomhost dev` has one consistent format ([`LogStyle::Dev`]): in text its records are
//! printed on stdout in the live view's own layout (`HH:MM:SS tag message`), between the
//! view's lines; in json the live view writes its lines as the same JSON records
//! ([`dev_json_line`]).
//!
//! Secrets never reach a record: the config's secret values are a redacting type, and
//! no record carries a token, a signature or a payload value.

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::sync::OnceLock;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime as _, SystemTime as RfcTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::dev::live_view::{self, Line, Tone};

/// How log records are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal only).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Where and how the records of a command are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStyle {
    /// Records on stderr (`run`, `bench`, the other commands).
    Plain,
    /// `zoomhost dev`: records on stdout, in the live view's layout when text.
    Dev,
}

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// The format [`init`] installed (text before it ran).
pub fn format() -> LogFormat {
    FORMAT.get().copied().unwrap_or_default()
}

/// Installs the process-wide subscriber: `ZOOMHOST_LOG` (an `EnvFilter`) or
/// `default_filter` chooses what is written, `format` and `style` how.
pub fn init(format: LogFormat, style: LogStyle, default_filter: &str) {
    let _ = FORMAT.set(format);
    let filter =
        EnvFilter::try_from_env("ZOOMHOST_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = match (format, style) {
        (LogFormat::Json, LogStyle::Plain) => builder
            .event_format(JsonLines)
            .with_writer(std::io::stderr)
            .try_init(),
        (LogFormat::Json, LogStyle::Dev) => builder
            .event_format(JsonLines)
            .with_writer(std::io::stdout)
            .try_init(),
        (LogFormat::Text, LogStyle::Plain) => builder
            .with_ansi(colour_on(std::io::stderr().is_terminal()))
            .with_writer(std::io::stderr)
            .try_init(),
        (LogFormat::Text, LogStyle::Dev) => builder
            .event_format(DevLines {
                color: colour_on(std::io::stdout().is_terminal()),
            })
            .with_writer(std::io::stdout)
            .try_init(),
    };
    if let Err(e) = result {
        eprintln!("zoomhost: logging already set up ({e})");
    }
}

/// Colour on a terminal, unless `NO_COLOR` is set (and not empty).
pub fn colour_on(terminal: bool) -> bool {
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A record's fields: `message` apart, the others in the order they were recorded.
#[derive(Default)]
struct Fields {
    message: String,
    others: Map<String, Value>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // `{:#}`-like: the error and its causes on one line.
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(cause) = source {
            let _ = write!(text, ": {cause}");
            source = cause.source();
        }
        self.put(field, Value::from(text));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }
}

impl Fields {
    fn of(event: &Event<'_>) -> Self {
        let mut fields = Fields::default();
        event.record(&mut fields);
        fields
    }

    fn put(&mut self, field: &Field, value: Value) {
        match (field.name(), value) {
            ("message", Value::String(text)) => self.message = text,
            (name, value) => {
                // `log` records forwarded to tracing carry their origin as `log.*` fields.
                if !name.starts_with("log.") {
                    self.others.insert(name.to_string(), value);
                }
            }
        }
    }
}

/// JSON lines with stable field names: `time`, `level`, `target`, `message`, then the
/// record's own fields (`plugin`, `stream`, ...). A record field named like one of the
/// first four is kept under `field.<name>`.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let fields = Fields::of(event);
        let meta = event.metadata();
        let mut record = record_head(level_name(meta.level()), meta.target(), fields.message);
        for (name, value) in fields.others {
            let name = if record.contains_key(&name) {
                format!("field.{name}")
            } else {
                name
            };
            record.insert(name, value);
        }
        let line = serde_json::to_string(&Value::Object(record)).map_err(|_| std::fmt::Error)?;
        writeln!(writer, "{line}")
    }
}

/// The four stable fields every JSON record starts with.
fn record_head(level: &str, target: &str, message: String) -> Map<String, Value> {
    let mut record = Map::new();
    record.insert("time".into(), Value::from(now_rfc3339()));
    record.insert("level".into(), Value::from(level));
    record.insert("target".into(), Value::from(target));
    record.insert("message".into(), Value::from(message));
    record
}

/// The live view's JSON form of one of its lines: the same fields as [`JsonLines`]
/// (`target` `zoomhost::dev`), plus `tag` and, when the line has any, `detail`.
pub fn dev_json_line(tag: &str, warning: bool, text: &str, detail: &[String]) -> String {
    let level = if warning { "warn" } else { "info" };
    let mut record = record_head(level, "zoomhost::dev", text.to_string());
    record.insert("tag".into(), Value::from(tag));
    if !detail.is_empty() {
        record.insert("detail".into(), Value::from(detail.to_vec()));
    }
    Value::Object(record).to_string()
}

/// `zoomhost dev`'s text records, in the live view's layout: a plugin's own line as
/// `HH:MM:SS plugin NAME: message`, the host's as `HH:MM:SS warn message (target)`.
#[derive(Debug, Clone, Copy)]
struct DevLines {
    color: bool,
}

impl<S, N> FormatEvent<S, N> for DevLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let line = dev_line(
            event.metadata().target(),
            *event.metadata().level(),
            Fields::of(event),
        );
        let clock = live_view::clock(std::time::SystemTime::now());
        writeln!(writer, "{}", live_view::render(&line, &clock, self.color))
    }
}

fn dev_line(target: &str, level: Level, mut fields: Fields) -> Line {
    let tone = match level {
        Level::ERROR => Tone::Bad,
        Level::WARN => Tone::Warn,
        _ => Tone::Info,
    };
    if target == "plugin" {
        let plugin = match fields.others.remove("plugin") {
            Some(Value::String(name)) => name,
            Some(other) => other.to_string(),
            None => "?".into(),
        };
        fields.others.remove("instance");
        return Line::new("plugin", tone, format!("{plugin}: {}", fields.message));
    }
    let mut text = fields.message;
    for (name, value) in &fields.others {
        match value {
            Value::String(s) => {
                let _ = write!(text, " {name}={s}");
            }
            other => {
                let _ = write!(text, " {name}={other}");
            }
        }
    }
    let _ = write!(text, " ({target})");
    Line::new(level_name(&level), tone, text)
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// Now as RFC 3339 in UTC with microseconds (`2026-11-30T15:04:05.123456Z`).
fn now_rfc3339() -> String {
    let mut text = String::new();
    let _ = RfcTime.format_time(&mut Writer::new(&mut text));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::fmt::MakeWriter;

    /// A writer collecting everything written, for one test's subscriber.
    #[derive(Clone, Default)]
    struct Collect(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Collect {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Collect {
        type Writer = Collect;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn text(collect: &Collect) -> String {
        String::from_utf8(collect.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn json_lines_have_the_stable_fields_and_the_record_fields() {
        let out = Collect::default();
        let subscriber = tracing_subscriber::fmt()
            .event_format(JsonLines)
            .with_writer(out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "plugin", plugin = "recorder", instance = 2u64, "disk \"full\"");
            tracing::info!(stream = "s-1", frames = 3u64, level = "x", "stream opened");
        });
        let lines: Vec<Value> = text(&out)
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect();
        assert_eq!(lines.len(), 2, "{}", text(&out));
        assert_eq!(lines[0]["level"], "warn");
        assert_eq!(lines[0]["target"], "plugin");
        assert_eq!(lines[0]["plugin"], "recorder");
        assert_eq!(lines[0]["instance"], 2);
        assert_eq!(lines[0]["message"], "disk \"full\"");
        assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(lines[1]["stream"], "s-1");
        assert_eq!(lines[1]["frames"], 3);
        assert_eq!(lines[1]["level"], "info");
        assert_eq!(lines[1]["field.level"], "x");
    }

    #[test]
    fn dev_lines_use_the_live_view_layout() {
        let out = Collect::default();
        let subscriber = tracing_subscriber::fmt()
            .event_format(DevLines { color: false })
            .with_writer(out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "plugin", plugin = "event-logger", instance = 0u64, "hello");
            tracing::warn!(target: "zoomhost::inputs", stream = "s-9", "slow plugin");
        });
        let printed = text(&out);
        let lines: Vec<&str> = printed.lines().collect();
        assert_eq!(lines.len(), 2, "{printed}");
        // `HH:MM:SS tag    message`, as the live view prints its own lines.
        assert_eq!(&lines[0][2..3], ":");
        assert_eq!(&lines[0][8..], " plugin event-logger: hello");
        assert_eq!(
            &lines[1][8..],
            " warn   slow plugin stream=s-9 (zoomhost::inputs)"
        );
        assert!(!printed.contains('\x1b'));
    }

    #[test]
    fn dev_json_lines_match_the_host_records() {
        let line: Value =
            serde_json::from_str(&dev_json_line("stream", false, "opened s-1", &["a".into()]))
                .unwrap();
        assert_eq!(line["target"], "zoomhost::dev");
        assert_eq!(line["level"], "info");
        assert_eq!(line["tag"], "stream");
        assert_eq!(line["message"], "opened s-1");
        assert_eq!(line["detail"][0], "a");
        assert!(line["time"].is_string());
    }
}
