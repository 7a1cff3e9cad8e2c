//! What a plugin's wasmtime `Store` holds: WASI with no filesystem, sockets or env,
//! wasi-http gated by the operator's grants, the memory cap, and the plugin's identity.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime::StoreLimits;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::bindings::types::LogLevel;
use super::bindings::zoomhost::plugin::host;
use super::http_gate::HttpGate;
use super::identity::PluginIdentity;
use super::output::GuestOutput;

/// A reserved `config-get` key: the milliseconds left before the deadline of the call in
/// progress, so a plugin can decide whether a retry still fits. Operators cannot set keys
/// in the `zoomhost.` namespace.
pub const REMAINING_MS_KEY: &str = "zoomhost.remaining_ms";

/// The data of one plugin instance's store.
pub struct StoreState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    gate: HttpGate,
    pub(crate) limits: StoreLimits,
    pub(crate) identity: Arc<PluginIdentity>,
    /// When the call in progress must stop; checked on every epoch tick.
    pub(crate) deadline: Instant,
}

impl StoreState {
    /// A sandbox for `identity`: no preopens, no env, no args, no sockets, no name lookup;
    /// stdout/stderr become tracing records.
    pub fn new(identity: Arc<PluginIdentity>, memory_bytes: usize) -> Self {
        let wasi = WasiCtx::builder()
            .stdout(GuestOutput::new(identity.clone(), "stdout"))
            .stderr(GuestOutput::new(identity.clone(), "stderr"))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        let limits = wasmtime::StoreLimitsBuilder::new()
            .memory_size(memory_bytes)
            .trap_on_grow_failure(true)
            .build();
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            gate: HttpGate::new(identity.clone()),
            limits,
            identity,
            deadline: Instant::now(),
        }
    }

    /// Sets the deadline of the call about to start, for the epoch check and for
    /// outbound HTTP timeouts.
    pub(crate) fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = deadline;
        self.gate.deadline = deadline;
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for StoreState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.gate,
        }
    }
}

impl host::Host for StoreState {
    fn log(&mut self, level: LogLevel, message: String) {
        self.identity.log(level, &message);
    }

    fn config_get(&mut self, key: String) -> Option<String> {
        if key == REMAINING_MS_KEY {
            let left = self.deadline.saturating_duration_since(Instant::now());
            return Some(left.as_millis().to_string());
        }
        self.identity.grant().config.get(&key).cloned()
    }

    fn config_keys(&mut self) -> Vec<String> {
        self.identity.grant().config.keys().cloned().collect()
    }
}

impl super::bindings::zoomhost::plugin::types::Host for StoreState {}
