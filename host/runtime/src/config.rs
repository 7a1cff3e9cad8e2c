//! What the runtime is configured with: the plugins folder, `[limits]`, and each plugin's
//! grant (`[plugins.NAME]`: outbound HTTP origins, stream control, config values, enabled,
//! instances, own limits).
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
    /// How many instances serve the plugin, sharded by meeting: a number, or `"auto"`
    /// for one per core. Unset: 1.
    pub instances: Option<InstancesSetting>,
}

/// `[plugins.NAME] instances`: a count, or a word (`"auto"`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum InstancesSetting {
    /// This many instances.
    Count(i64),
    /// `"auto"`: one per core (`std::thread::available_parallelism`).
    Word(String),
}

/// Most instances one plugin may have.
pub const MAX_INSTANCES: usize = 64;

/// Fewest slots of the shared instance pool (wasmtime's pooling allocator: component
/// instances alive at once over all plugins). The pool is sized at start from the
/// configured instances (see [`RuntimeConfig::pool_slots`]); each instance reserves
/// [`SLOTS_PER_INSTANCE`], one for the instance serving and one for its successor during
/// a hot reload.
pub const POOL_MIN_SLOTS: usize = 128;

/// Pool slots kept beyond the configured instances, for plugins the config does not name
/// (one instance each).
pub const POOL_UNNAMED_SLOTS: usize = 64;

/// Most slots the pool may have: each slot reserves address space for its linear
/// memories (up to `max_memories` of `memory_mib` each, with guard regions), so the pool
/// cannot grow without bound.
pub const POOL_MAX_SLOTS: usize = 512;

/// Pool slots one instance reserves: itself, and its successor during a swap.
pub const SLOTS_PER_INSTANCE: usize = 2;

impl InstancesSetting {
    /// The count this setting means, or why it is not valid.
    pub fn resolve(&self) -> Result<usize, String> {
        match self {
            Self::Count(n) if *n >= 1 && (*n as u64) <= MAX_INSTANCES as u64 => Ok(*n as usize),
            Self::Count(n) => Err(format!(
                "must be between 1 and {MAX_INSTANCES} (or \"auto\"), not {n}"
            )),
            Self::Word(w) if w.trim() == "auto" => Ok(auto_instances()),
            Self::Word(w) => Err(format!(
                "must be a number between 1 and {MAX_INSTANCES} or \"auto\", not {w:?}"
            )),
        }
    }
}

/// `"auto"`: one instance per core the process may use (at most [`MAX_INSTANCES`]).
pub fn auto_instances() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, MAX_INSTANCES)
}

/// A validated, expanded grant, ready for the runtime.
#[derive(Debug, Clone, PartialEq)]
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
    /// Instances serving the plugin, sharded by meeting (at least 1).
    pub instances: usize,
}

impl Default for ResolvedGrant {
    fn default() -> Self {
        Self {
            allow_http: Vec::new(),
            stream_control: false,
            config: BTreeMap::new(),
            enabled: false,
            limits: Limits::default(),
            instances: 1,
        }
    }
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
            let instances = match grant.instances.as_ref().map(InstancesSetting::resolve) {
                None => 1,
                Some(Ok(n)) => n,
                Some(Err(e)) => {
                    problems.push(format!("plugins.{name}.instances {e}"));
                    1
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
                    instances,
                },
            );
        }
        if let Some(problem) = pool_problem(&resolved) {
            problems.push(problem);
        }
        Self {
            plugins_dir,
            limits,
            plugins: resolved,
        }
    }

    /// Slots of the shared instance pool for this config: two per configured instance of
    /// every enabled plugin, plus [`POOL_UNNAMED_SLOTS`] for plugins it does not name; at
    /// least [`POOL_MIN_SLOTS`], at most [`POOL_MAX_SLOTS`] (a config needing more is
    /// rejected by [`RuntimeConfig::resolve`]).
    pub fn pool_slots(&self) -> usize {
        (configured_slots(&self.plugins) + POOL_UNNAMED_SLOTS).clamp(POOL_MIN_SLOTS, POOL_MAX_SLOTS)
    }

    /// The grant for a plugin; a plugin the config does not name gets nothing but the
    /// host's limits (and one instance).
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

/// Pool slots the enabled plugins' configured instances reserve.
fn configured_slots(plugins: &BTreeMap<String, ResolvedGrant>) -> usize {
    plugins
        .values()
        .filter(|g| g.enabled)
        .map(|g| g.instances * SLOTS_PER_INSTANCE)
        .sum()
}

/// Why the enabled plugins' instances cannot fit in the largest pool, if they cannot:
/// names the plugin with the most instances and the figures.
fn pool_problem(plugins: &BTreeMap<String, ResolvedGrant>) -> Option<String> {
    let enabled: Vec<(&String, usize)> = plugins
        .iter()
        .filter(|(_, g)| g.enabled)
        .map(|(name, g)| (name, g.instances))
        .collect();
    let needed = configured_slots(plugins);
    let room = POOL_MAX_SLOTS - POOL_UNNAMED_SLOTS;
    if needed <= room {
        return None;
    }
    let (name, most) = enabled.iter().max_by_key(|(_, n)| *n)?;
    let others: Vec<String> = enabled
        .iter()
        .filter(|(other, _)| other != name)
        .map(|(other, n)| format!("{other}: {n}"))
        .collect();
    Some(format!(
        "plugins.{name}.instances = {most}: every instance reserves {SLOTS_PER_INSTANCE} slots of the shared instance pool (one more during a hot reload), so {most} instances need {}; with the other plugins' instances ({}) the config needs {needed} slots, over the {room} the pool can give configured plugins (at most {POOL_MAX_SLOTS} slots, {POOL_UNNAMED_SLOTS} of them kept for plugins the config does not name). Lower `instances`",
        most * SLOTS_PER_INSTANCE,
        if others.is_empty() { "none".to_string() } else { others.join(", ") }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(toml_text: &str) -> (RuntimeConfig, Vec<String>) {
        let plugins: BTreeMap<String, PluginGrant> = toml::from_str(toml_text).unwrap();
        let mut problems = Vec::new();
        let config = RuntimeConfig::resolve(
            PathBuf::from("plugins"),
            Limits::default(),
            plugins,
            &|v| Ok(v.to_string()),
            &mut problems,
        );
        (config, problems)
    }

    #[test]
    fn instances_default_to_one_and_take_a_count_or_auto() {
        let (config, problems) = resolve("[a]\n[b]\ninstances = 4\n[c]\ninstances = \"auto\"");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(config.grant("a").instances, 1);
        assert_eq!(config.grant("b").instances, 4);
        assert_eq!(config.grant("c").instances, auto_instances());
        assert_eq!(config.grant("unnamed").instances, 1);
    }

    #[test]
    fn bad_instances_are_rejected_naming_the_key() {
        for bad in ["0", "-1", "65", "\"many\"", "1.5"] {
            let text = format!("[p]\ninstances = {bad}");
            match toml::from_str::<BTreeMap<String, PluginGrant>>(&text) {
                Ok(plugins) => {
                    let mut problems = Vec::new();
                    RuntimeConfig::resolve(
                        PathBuf::from("plugins"),
                        Limits::default(),
                        plugins,
                        &|v| Ok(v.to_string()),
                        &mut problems,
                    );
                    assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
                    assert!(
                        problems[0].starts_with("plugins.p.instances"),
                        "{problems:?}"
                    );
                }
                // A float does not parse at all: the config reader names the key.
                Err(e) => assert!(bad == "1.5", "{bad}: {e}"),
            }
        }
    }

    #[test]
    fn a_config_whose_instances_do_not_fit_the_pool_is_rejected_with_the_figures() {
        let many = "[big]\ninstances = 64\n[p1]\ninstances = 63\n[p2]\ninstances = 63\n";
        let (_, problems) = resolve(&format!("{many}[small]\ninstances = 35"));
        assert_eq!(problems.len(), 1, "{problems:?}");
        let p = &problems[0];
        assert!(p.starts_with("plugins.big.instances = 64"), "{p}");
        assert!(
            p.contains("need 128;") && p.contains("450 slots") && p.contains("over the 448"),
            "{p}"
        );
        assert!(p.contains("p1: 63, p2: 63, small: 35"), "{p}");
        // A disabled plugin reserves nothing.
        let (config, problems) =
            resolve(&format!("{many}[small]\ninstances = 35\nenabled = false"));
        assert!(problems.is_empty(), "{problems:?}");
        // The pool is sized from the configured instances.
        assert_eq!(config.pool_slots(), 2 * (64 + 63 + 63) + POOL_UNNAMED_SLOTS);
        let (config, _) = resolve("[a]\ninstances = 4");
        assert_eq!(config.pool_slots(), POOL_MIN_SLOTS);
    }
}
