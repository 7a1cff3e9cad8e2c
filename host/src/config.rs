//! Host configuration: `zoomhost.toml`, validated at load with errors that name the key.
//!
//! ```toml
//! plugins_dir = "plugins"          # folder watched for *.wasm
//!
//! [limits]
//! event_deadline_ms = 1000         # per event call
//! media_deadline_ms = 50           # per media-frame call
//! memory_mib = 64                  # per instance
//! mailbox_capacity = 1024          # deliveries queued per plugin before events start waiting
//! event_wait_ms = 2000             # how long an event may wait beyond capacity before it is dropped
//! audio_queue_frames = 500         # audio frames queued per plugin before the oldest is dropped
//! max_failures = 5                 # failures within `failure_window_s` that quarantine a plugin
//! failure_window_s = 60
//! log_lines_per_second = 1000      # per plugin; the rest are counted and summarised
//!
//! [plugins.slack-notifier]         # keyed by the .wasm file stem
//! allow_http = ["https://hooks.slack.com"]
//! config = { webhook_url = "${SLACK_WEBHOOK_URL}" }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

use crate::plugins::capabilities::HostPattern;

/// Limits applied to every plugin.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Deadline for one event call, in milliseconds.
    pub event_deadline_ms: u64,
    /// Deadline for one media call (frame, segment, session open/close), in milliseconds.
    pub media_deadline_ms: u64,
    /// Linear-memory cap per instance, in MiB.
    pub memory_mib: u64,
    /// Deliveries queued per plugin before events start to wait.
    pub mailbox_capacity: usize,
    /// How long an event queued beyond capacity may wait before it is dropped.
    pub event_wait_ms: u64,
    /// Audio frames queued per plugin before the oldest are dropped.
    pub audio_queue_frames: usize,
    /// Failures within `failure_window_s` after which a plugin is quarantined.
    pub max_failures: u32,
    /// Window for `max_failures`, in seconds.
    pub failure_window_s: u64,
    /// Log lines per second a plugin may write before the rest are suppressed and counted.
    pub log_lines_per_second: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            event_deadline_ms: 1000,
            media_deadline_ms: 50,
            memory_mib: 64,
            mailbox_capacity: 1024,
            event_wait_ms: 2000,
            audio_queue_frames: 500,
            max_failures: 5,
            failure_window_s: 60,
            log_lines_per_second: 1000,
        }
    }
}

impl Limits {
    /// Event call deadline.
    pub fn event_deadline(&self) -> Duration {
        Duration::from_millis(self.event_deadline_ms)
    }
    /// Media call deadline.
    pub fn media_deadline(&self) -> Duration {
        Duration::from_millis(self.media_deadline_ms)
    }
    /// Memory cap in bytes.
    pub fn memory_bytes(&self) -> usize {
        usize::try_from(self.memory_mib.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX)
    }
    /// How long an event may wait beyond capacity.
    pub fn event_wait(&self) -> Duration {
        Duration::from_millis(self.event_wait_ms)
    }
    /// Window for counting failures.
    pub fn failure_window(&self) -> Duration {
        Duration::from_secs(self.failure_window_s)
    }

    fn validate(&self, problems: &mut Vec<String>) {
        let mut positive = |name: &str, v: u64| {
            if v == 0 {
                problems.push(format!("limits.{name} must be greater than 0"));
            }
        };
        positive("event_deadline_ms", self.event_deadline_ms);
        positive("media_deadline_ms", self.media_deadline_ms);
        positive("memory_mib", self.memory_mib);
        positive("mailbox_capacity", self.mailbox_capacity as u64);
        positive("audio_queue_frames", self.audio_queue_frames as u64);
        positive("max_failures", u64::from(self.max_failures));
        positive("failure_window_s", self.failure_window_s);
        positive("log_lines_per_second", u64::from(self.log_lines_per_second));
        if self.memory_mib > 4096 {
            problems.push("limits.memory_mib must be at most 4096 (wasm32 address space)".into());
        }
    }
}

/// What the operator grants one plugin.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PluginGrant {
    /// Outbound HTTP origins the plugin may call: `scheme://host[:port]`, `*` wildcards.
    pub allow_http: Vec<String>,
    /// Config values handed to the plugin; `${ENV_VAR}` is expanded at load.
    pub config: BTreeMap<String, String>,
    /// Set to false to keep a plugin in the folder without loading it.
    pub enabled: Option<bool>,
}

/// A validated, expanded grant, ready for the runtime.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResolvedGrant {
    /// Parsed outbound HTTP patterns.
    pub allow_http: Vec<HostPattern>,
    /// Config values with `${ENV}` expanded.
    pub config: BTreeMap<String, String>,
    /// Whether the plugin is loaded at all.
    pub enabled: bool,
}

/// The raw file shape.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawConfig {
    plugins_dir: Option<PathBuf>,
    limits: Limits,
    plugins: BTreeMap<String, PluginGrant>,
}

/// The host configuration after validation.
#[derive(Debug, Clone, PartialEq)]
pub struct HostConfig {
    /// Folder watched for `*.wasm` plugins.
    pub plugins_dir: PathBuf,
    /// Limits for every plugin.
    pub limits: Limits,
    /// Grants keyed by plugin (file stem).
    pub plugins: BTreeMap<String, ResolvedGrant>,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            plugins_dir: PathBuf::from("plugins"),
            limits: Limits::default(),
            plugins: BTreeMap::new(),
        }
    }
}

impl HostConfig {
    /// Reads and validates a TOML file; relative `plugins_dir` is resolved against the
    /// file's folder.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading host config {}", path.display()))?;
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let base = absolute.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base, &|k| std::env::var(k).ok())
            .with_context(|| format!("in host config {}", path.display()))
    }

    /// Parses TOML text; `env` resolves `${VAR}` references. Every problem is reported at
    /// once, each naming its key.
    pub fn parse(
        text: &str,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut problems = Vec::new();
        raw.limits.validate(&mut problems);
        let mut plugins = BTreeMap::new();
        for (name, grant) in raw.plugins {
            let mut allow_http = Vec::new();
            for (i, p) in grant.allow_http.iter().enumerate() {
                match HostPattern::parse(p) {
                    Ok(p) => allow_http.push(p),
                    Err(e) => problems.push(format!("plugins.{name}.allow_http[{i}]: {e}")),
                }
            }
            let mut config = BTreeMap::new();
            for (key, value) in grant.config {
                match expand_env(&value, env) {
                    Ok(v) => {
                        config.insert(key, v);
                    }
                    Err(e) => problems.push(format!("plugins.{name}.config.{key}: {e}")),
                }
            }
            plugins.insert(
                name,
                ResolvedGrant {
                    allow_http,
                    config,
                    enabled: grant.enabled.unwrap_or(true),
                },
            );
        }
        if !problems.is_empty() {
            anyhow::bail!("invalid configuration:\n  - {}", problems.join("\n  - "));
        }
        let plugins_dir = match raw.plugins_dir {
            Some(p) if p.is_relative() => base.join(p),
            Some(p) => p,
            None => base.join("plugins"),
        };
        Ok(Self {
            plugins_dir,
            limits: raw.limits,
            plugins,
        })
    }

    /// The grant for a plugin; a plugin the config does not name gets nothing.
    pub fn grant(&self, plugin: &str) -> ResolvedGrant {
        self.plugins.get(plugin).cloned().unwrap_or(ResolvedGrant {
            enabled: true,
            ..ResolvedGrant::default()
        })
    }
}

/// Expands `${VAR}` references; `$$` is a literal `$`. A missing variable is an error that
/// names it (never its value).
pub fn expand_env(value: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let end = tail
                .find('}')
                .ok_or_else(|| "unterminated ${...} reference".to_string())?;
            let var = &tail[..end];
            if var.is_empty() {
                return Err("empty ${} reference".into());
            }
            let v = env(var).ok_or_else(|| format!("environment variable {var} is not set"))?;
            out.push_str(&v);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        (k == "SECRET").then(|| "s3cr3t".to_string())
    }

    #[test]
    fn expands_env_and_reports_missing_by_name() {
        assert_eq!(expand_env("a${SECRET}b$$", &env).unwrap(), "as3cr3tb$");
        let err = expand_env("${NOPE}", &env).unwrap_err();
        assert!(err.contains("NOPE"), "{err}");
    }

    #[test]
    fn parses_grants_and_limits() {
        let cfg = HostConfig::parse(
            r#"
            plugins_dir = "p"
            [limits]
            event_deadline_ms = 250
            [plugins.slack]
            allow_http = ["https://hooks.slack.com", "http://127.0.0.1:*"]
            config = { url = "https://x/${SECRET}" }
            "#,
            Path::new("/etc/zh"),
            &env,
        )
        .unwrap();
        assert_eq!(cfg.plugins_dir, Path::new("/etc/zh/p"));
        assert_eq!(cfg.limits.event_deadline_ms, 250);
        assert_eq!(cfg.limits.media_deadline_ms, 50);
        let g = cfg.grant("slack");
        assert_eq!(g.allow_http.len(), 2);
        assert_eq!(g.config["url"], "https://x/s3cr3t");
        assert!(cfg.grant("other").allow_http.is_empty());
    }

    #[test]
    fn lists_every_problem_at_once() {
        let err = HostConfig::parse(
            r#"
            [limits]
            memory_mib = 0
            [plugins.a]
            allow_http = ["ftp//nope"]
            config = { k = "${MISSING_ONE}" }
            "#,
            Path::new("."),
            &env,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("limits.memory_mib"), "{err}");
        assert!(err.contains("plugins.a.allow_http[0]"), "{err}");
        assert!(err.contains("MISSING_ONE"), "{err}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = HostConfig::parse("[limits]\nevent_deadline = 3\n", Path::new("."), &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("event_deadline"), "{err}");
    }
}
