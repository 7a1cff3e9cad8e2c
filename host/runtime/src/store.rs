//! What a plugin's wasmtime `Store` holds: WASI with no filesystem, sockets or env,
//! wasi-http gated by the operator's grants, the memory cap, the plugin's identity, and
//! the host's stream control (used by `stream_control`). The `host` interface is served
//! here for both world versions.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::bindings::types::LogLevel;
use crate::bindings::v0_1::zoomhost::plugin0_1_0 as v0_1;
use crate::bindings::zoomhost::plugin::host;
use crate::http_gate::HttpGate;
use crate::identity::PluginIdentity;
use crate::limiter::SandboxLimiter;
use crate::limits::Limits;
use crate::output::GuestOutput;
use crate::stream_control::ControlSlot;

/// A reserved `config-get` key: the milliseconds left before the deadline of the call in
/// progress, so a plugin can decide whether a retry still fits. Operators cannot set keys
/// in the `zoomhost.` namespace.
pub const REMAINING_MS_KEY: &str = "zoomhost.remaining_ms";

/// Largest `wasi:random` request served in one call.
const MAX_RANDOM_BYTES: u64 = 64 * 1024;

/// The data of one plugin instance's store.
pub struct StoreState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    gate: HttpGate,
    pub(crate) limiter: SandboxLimiter,
    pub(crate) identity: Arc<PluginIdentity>,
    /// The host's stream control, shared by every store.
    pub(crate) control: Arc<ControlSlot>,
    /// When the call in progress must stop; checked on every epoch tick.
    pub(crate) deadline: Instant,
    /// Which of the plugin's instances this store serves (for log lines).
    pub(crate) instance: u32,
}

impl StoreState {
    /// A sandbox for `identity` under `limits`: no preopens, no env, no args, no sockets,
    /// no name lookup; stdout/stderr become tracing records; host-side resources capped
    /// (see [`Limits::host_bytes_bound`]). `control` is the host's stream control;
    /// `instance` is which of the plugin's instances the store serves.
    pub(crate) fn new(
        identity: Arc<PluginIdentity>,
        limits: &Limits,
        control: Arc<ControlSlot>,
        instance: u32,
    ) -> Self {
        let wasi = WasiCtx::builder()
            .stdout(GuestOutput::new(identity.clone(), "stdout", instance))
            .stderr(GuestOutput::new(identity.clone(), "stderr", instance))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            // Random bytes are made on the host before they are copied in.
            .max_random_size(MAX_RANDOM_BYTES)
            .build();
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(limits.http_field_bytes as usize);
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.max_handles as usize);
        Self {
            wasi,
            http,
            table,
            gate: HttpGate::new(identity.clone()),
            limiter: SandboxLimiter::new(limits),
            identity,
            control,
            deadline: Instant::now(),
            instance,
        }
    }

    /// A call starts: sets its deadline (for the epoch check and outbound HTTP timeouts)
    /// and opens its scope for outbound requests.
    pub(crate) fn begin_call(&mut self, deadline: Instant) {
        self.deadline = deadline;
        self.gate.begin_call(deadline);
    }

    /// The call ended, however: its unfinished outbound requests are cancelled.
    pub(crate) fn end_call(&mut self) {
        self.gate.end_call();
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
        self.identity.log_from(self.instance, level, &message);
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

/// World 0.1.0's `host` interface: the same functions, its own log-level type.
impl v0_1::host::Host for StoreState {
    fn log(&mut self, level: v0_1::types::LogLevel, message: String) {
        host::Host::log(self, crate::compat::log_level(level), message);
    }

    fn config_get(&mut self, key: String) -> Option<String> {
        host::Host::config_get(self, key)
    }

    fn config_keys(&mut self) -> Vec<String> {
        host::Host::config_keys(self)
    }
}

impl v0_1::types::Host for StoreState {}
