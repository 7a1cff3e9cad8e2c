//! What the runtime is configured with: the plugins folder, `[limits]`, and each plugin's
//! grant (`[plugins.NAME]`: outbound HTTP origins, stream control, config values, enabled,
//! own limits).
//! The binary reads the file and composes this with the sources' sections.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::capabilities::HostPattern;
use crate::limits::Limits;

/// What the operator grants one plugin, as written in `[plugins.NAME]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PluginGrant {
    /// Outbound HTTP origins the plugin may call: `scheme://host[:port]`, `*` wildcards.
    pub allow_http: Vec<String>,
    /// Whether the plugin may make requests on RTMS streams (the WIT `stream-control`
    /// interface: close a stream, subscribe a participant's video). Off by default.
    pub stream_control: bool,
    /// Config values handed to the plugin; `${ENV_VAR}` is expanded at load.
    pub config: BTreeMap<String, String>,
    /// Set to false to keep a plugin in the folder without loading it.
    pub enabled: Option<bool>,
    /// This plugin's own limits: only the keys named replace the host's `[limits]`.
    pub limits: toml::Table,
}

/// A validated, expanded grant, ready for the runtime.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResolvedGrant {
    /// Parsed outbound HTTP patterns.
    pub allow_http: Vec<HostPattern>,
    /// Whether the plugin may make requests on RTMS streams.
    pub stream_control: bool,
    /// Config values with `${ENV}` expanded.
    pub config: BTreeMap<String, String>,
    /// Whether the plugin is loaded at all.
    pub enabled: bool,
    /// The host's limits with the plugin's overrides laid over them.
    pub limits: Limits,
}

/// The runtime's configuration, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeConfig {
    /// Folder watched for `*.wasm` plugins.
    pub plugins_dir: PathBuf,
    /// Limits for every plugin.
    pub limits: Limits,
    /// Grants keyed by plugin (file stem).
    pub plugins: BTreeMap<String, ResolvedGrant>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            plugins_dir: PathBuf::from("plugins"),
            limits: Limits::default(),
            plugins: BTreeMap::new(),
        }
    }
}

impl RuntimeConfig {
    /// Validates `[limits]` and resolves every `[plugins.NAME]`; `expand` expands
    /// `${VAR}` references in config values. Each problem is added to `problems`, naming
    /// its key.
    pub fn resolve(
        plugins_dir: PathBuf,
        limits: Limits,
        plugins: BTreeMap<String, PluginGrant>,
        expand: &dyn Fn(&str) -> Result<String, String>,
        problems: &mut Vec<String>,
    ) -> Self {
        limits.validate("limits", problems);
        let mut resolved = BTreeMap::new();
        for (name, grant) in plugins {
            let mut allow_http = Vec::new();
            for (i, p) in grant.allow_http.iter().enumerate() {
                match HostPattern::parse(p) {
                    Ok(p) => allow_http.push(p),
                    Err(e) => problems.push(format!("plugins.{name}.allow_http[{i}]: {e}")),
                }
            }
            let mut config = BTreeMap::new();
            for (key, value) in grant.config {
                if key.starts_with("zoomhost.") {
                    problems.push(format!(
                        "plugins.{name}.config.{key}: the `zoomhost.` prefix is reserved for values the host provides"
                    ));
                    continue;
                }
                match expand(&value) {
                    Ok(v) => {
                        config.insert(key, v);
                    }
                    Err(e) => problems.push(format!("plugins.{name}.config.{key}: {e}")),
                }
            }
            let plugin_limits = match limits.overlay(&grant.limits) {
                Ok(l) => {
                    l.validate(&format!("plugins.{name}.limits"), problems);
                    l
                }
                Err(e) => {
                    problems.push(format!("plugins.{name}.limits: {e}"));
                    limits.clone()
                }
            };
            resolved.insert(
                name,
                ResolvedGrant {
                    allow_http,
                    stream_control: grant.stream_control,
                    config,
                    enabled: grant.enabled.unwrap_or(true),
                    limits: plugin_limits,
                },
            );
        }
        Self {
            plugins_dir,
            limits,
            plugins: resolved,
        }
    }

    /// The grant for a plugin; a plugin the config does not name gets nothing but the
    /// host's limits.
    pub fn grant(&self, plugin: &str) -> ResolvedGrant {
        self.plugins
            .get(plugin)
            .cloned()
            .unwrap_or_else(|| ResolvedGrant {
                enabled: true,
                limits: self.limits.clone(),
                ..ResolvedGrant::default()
            })
    }
}
