//! `[limits]`: everything the host lets one plugin instance use, and the per-plugin
//! overrides in `[plugins.NAME.limits]`.
//!
//! A plugin can make the host hold more than its linear memory: resources it creates
//! through WASI and `wasi:http` (header `fields`, requests, bodies), data it passes in
//! host calls, outbound connections, extra core instances with memories and tables of
//! their own, and the cost of compiling it. Each of these has a budget here, so what one
//! plugin instance can make the host hold is bounded by (see [`Limits::host_bytes_bound`]):
//!
//! ```text
//!   memory_mib                                (all linear memories of the instance)
//! + table_elements × 8 bytes                  (all tables)
//! + max_handles × max(http_field_bytes, 2 × HTTP_BODY_CHUNK)   (live host resources)
//! + hostcall_bytes                            (one host call's arguments)
//! + max_outbound_requests × OUTBOUND_CONNECTION_BYTES          (open connections)
//! ```
//!
//! wasmtime's `ResourceLimiter` only sees linear memories and tables, the wasi-http
//! field limit caps one `fields` object and not their total, and nothing caps a body:
//! hence the bound is built from parts, each enforced where wasmtime offers a hook.
//!
//! An override names only the keys it changes: `[plugins.trusted.limits]
//! event_deadline_ms = 10000` gives one plugin a long deadline without giving it to the
//! others.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Largest chunk a plugin may write to an outgoing HTTP body in one call; each live body
/// buffers at most two of them.
pub const HTTP_BODY_CHUNK: usize = 16 * 1024;

/// What the host may hold for one open outbound connection (TLS and HTTP buffers); used
/// for the documented bound only.
pub const OUTBOUND_CONNECTION_BYTES: u64 = 512 * 1024;

/// Limits applied to a plugin: the host's `[limits]`, with a plugin's own
/// `[plugins.NAME.limits]` laid over them.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Deadline for one event call, in milliseconds.
    pub event_deadline_ms: u64,
    /// Deadline for one media call (frame, segment, session open/close), in milliseconds.
    pub media_deadline_ms: u64,
    /// Linear memory per instance, all its memories together, in MiB.
    pub memory_mib: u64,
    /// Linear memories one instance may create.
    pub max_memories: u32,
    /// Tables one instance may create.
    pub max_tables: u32,
    /// Elements of all tables of one instance together.
    pub table_elements: u64,
    /// Core instances one instance may create (a component instantiates one per core
    /// module it uses; each may bring a memory and tables).
    pub max_core_instances: u32,
    /// Live resource handles (guest-side and host-side) one instance may hold: HTTP
    /// `fields`, requests, bodies, streams, pollables, open media sessions.
    pub max_handles: u32,
    /// Bytes of names and values one `wasi:http` `fields` object may hold.
    pub http_field_bytes: u32,
    /// Bytes a plugin may pass to the host in one host call (strings, lists).
    pub hostcall_bytes: u64,
    /// Outbound HTTP requests one plugin may have in flight; beyond it a request fails at
    /// once. Every request ends when the call that made it returns.
    pub max_outbound_requests: u32,
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
    /// Largest `.wasm` file accepted, in MiB.
    pub max_component_mib: u64,
    /// Core modules a component may contain.
    pub max_modules: u64,
    /// Functions defined by all of a component's modules together.
    pub max_functions: u64,
    /// Bytes of code of all modules together.
    pub max_code_bytes: u64,
    /// Bytes of data segments of all modules together.
    pub max_data_bytes: u64,
    /// Component instances a component may create.
    pub max_component_instances: u64,
    /// Event patterns a plugin may declare.
    pub max_event_patterns: u32,
    /// Longest event pattern, in bytes.
    pub max_pattern_bytes: u32,
    /// Longest plugin name or version, in bytes.
    pub max_name_bytes: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            event_deadline_ms: 1000,
            media_deadline_ms: 50,
            memory_mib: 64,
            max_memories: 4,
            max_tables: 8,
            table_elements: 100_000,
            max_core_instances: 64,
            max_handles: 1024,
            http_field_bytes: 16 * 1024,
            hostcall_bytes: 8 * 1024 * 1024,
            max_outbound_requests: 16,
            mailbox_capacity: 1024,
            event_wait_ms: 2000,
            audio_queue_frames: 500,
            max_failures: 5,
            failure_window_s: 60,
            log_lines_per_second: 1000,
            max_component_mib: 64,
            max_modules: 32,
            max_functions: 60_000,
            max_code_bytes: 8 * 1024 * 1024,
            max_data_bytes: 48 * 1024 * 1024,
            max_component_instances: 64,
            max_event_patterns: 256,
            max_pattern_bytes: 256,
            max_name_bytes: 128,
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
    /// Largest component file, in bytes.
    pub fn max_component_bytes(&self) -> u64 {
        self.max_component_mib.saturating_mul(1024 * 1024)
    }

    /// The most the host holds on behalf of one instance of a plugin with these limits,
    /// whatever the plugin does (see the module docs for the parts).
    pub fn host_bytes_bound(&self) -> u64 {
        let handle = u64::from(self.http_field_bytes).max(2 * HTTP_BODY_CHUNK as u64);
        (self.memory_bytes() as u64)
            .saturating_add(self.table_elements.saturating_mul(8))
            .saturating_add(u64::from(self.max_handles).saturating_mul(handle))
            .saturating_add(self.hostcall_bytes)
            .saturating_add(
                u64::from(self.max_outbound_requests).saturating_mul(OUTBOUND_CONNECTION_BYTES),
            )
    }

    /// Checks every value; `at` names the table (`limits` or `plugins.NAME.limits`).
    pub(crate) fn validate(&self, at: &str, problems: &mut Vec<String>) {
        let mut positive = |name: &str, v: u64| {
            if v == 0 {
                problems.push(format!("{at}.{name} must be greater than 0"));
            }
        };
        positive("event_deadline_ms", self.event_deadline_ms);
        positive("media_deadline_ms", self.media_deadline_ms);
        positive("memory_mib", self.memory_mib);
        positive("max_memories", u64::from(self.max_memories));
        positive("max_core_instances", u64::from(self.max_core_instances));
        positive("max_handles", u64::from(self.max_handles));
        positive("http_field_bytes", u64::from(self.http_field_bytes));
        positive("hostcall_bytes", self.hostcall_bytes);
        positive("mailbox_capacity", self.mailbox_capacity as u64);
        positive("audio_queue_frames", self.audio_queue_frames as u64);
        positive("max_failures", u64::from(self.max_failures));
        positive("failure_window_s", self.failure_window_s);
        positive("log_lines_per_second", u64::from(self.log_lines_per_second));
        positive("max_component_mib", self.max_component_mib);
        positive("max_modules", self.max_modules);
        positive("max_functions", self.max_functions);
        positive("max_code_bytes", self.max_code_bytes);
        positive("max_event_patterns", u64::from(self.max_event_patterns));
        positive("max_pattern_bytes", u64::from(self.max_pattern_bytes));
        positive("max_name_bytes", u64::from(self.max_name_bytes));
        if self.memory_mib > 4096 {
            problems.push(format!(
                "{at}.memory_mib must be at most 4096 (wasm32 address space)"
            ));
        }
        if self.max_memories > 64 || self.max_tables > 64 {
            problems.push(format!(
                "{at}.max_memories and {at}.max_tables must be at most 64"
            ));
        }
        if self.max_handles > 1_000_000 {
            problems.push(format!("{at}.max_handles must be at most 1000000"));
        }
    }

    /// These limits with a plugin's `[plugins.NAME.limits]` table laid over them: keys
    /// the table names replace the host's, the rest stay.
    pub(crate) fn overlay(&self, table: &toml::Table) -> Result<Limits, String> {
        let mut base = toml::Table::try_from(self).map_err(|e| e.to_string())?;
        for (k, v) in table {
            base.insert(k.clone(), v.clone());
        }
        toml::Value::Table(base)
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_override_changes_only_the_keys_it_names() {
        let host = Limits {
            event_deadline_ms: 500,
            ..Limits::default()
        };
        let table: toml::Table = toml::from_str("media_deadline_ms = 7\nmax_handles = 9").unwrap();
        let merged = host.overlay(&table).unwrap();
        assert_eq!(merged.event_deadline_ms, 500);
        assert_eq!(merged.media_deadline_ms, 7);
        assert_eq!(merged.max_handles, 9);
        assert_eq!(merged.memory_mib, host.memory_mib);
        // Every key round-trips: an empty override is the host's limits.
        assert_eq!(host.overlay(&toml::Table::new()).unwrap(), host);
        let err = host
            .overlay(&toml::from_str("memory = 3").unwrap())
            .unwrap_err();
        assert!(err.contains("memory"), "{err}");
    }

    #[test]
    fn the_bound_grows_with_each_part() {
        let base = Limits::default();
        let more_handles = Limits {
            max_handles: base.max_handles * 2,
            ..base.clone()
        };
        assert!(more_handles.host_bytes_bound() > base.host_bytes_bound());
        let more_memory = Limits {
            memory_mib: base.memory_mib * 2,
            ..base.clone()
        };
        assert!(more_memory.host_bytes_bound() > base.host_bytes_bound());
        // With the defaults: under 160 MiB per instance.
        assert!(
            base.host_bytes_bound() < 160 * 1024 * 1024,
            "{}",
            base.host_bytes_bound()
        );
    }
}
