//! The wasmtime side: one engine (pooling allocator where the machine allows it), one
//! linker with WASI p2 + wasi-http + the `host` and `stream-control` interfaces of every
//! served world version, an epoch ticker for deadlines, and compilation with the checks
//! that give clear errors for bad files (among them the world check: a component must
//! export `zoomhost:plugin/guest` at a served version, 0.2.0 or 0.1.0).
//!
//! Each runtime starts an [`EpochTicker`] (module `epoch`) for its engine and stops it
//! when dropped; every plugin call holds the ticker's guard while it runs.
//!
//! A Cranelift compile cannot be interrupted, so a component's shape is checked against
//! the plugin's limits before compiling ([`super::precheck`]); compiles then run one at a
//! time on one thread, so loading a plugin never takes more than one core from the
//! delivery path.

use std::sync::{Arc, Mutex};

use thiserror::Error;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::bindings::{self, WorldVersion, SERVED_VERSIONS, WORLD_PACKAGE, WORLD_VERSION};
use crate::config::RuntimeConfig;
use crate::epoch::EpochTicker;
use crate::guest::GuestPre;
use crate::limits::Limits;
use crate::precheck::{self, ShapeLimits};
use crate::store::StoreState;
use crate::stream_control::ControlSlot;

/// Why a file could not become a plugin.
#[derive(Debug, Error)]
pub enum LoadError {
    /// Not a wasm file at all.
    #[error("{origin}: not a WebAssembly file (no \\0asm header)")]
    NotWasm {
        /// File or name the bytes came from.
        origin: String,
    },
    /// A core module rather than a component.
    #[error("{origin}: is a core WebAssembly module, not a component; build the plugin with `cargo build --target wasm32-wasip2` (or wrap it with `wasm-tools component new`)")]
    CoreModule {
        /// File or name.
        origin: String,
    },
    /// Wrong world version.
    #[error("{origin}: built for {found}, but this host serves {}; rebuild it against zoomhost-sdk for {WORLD_VERSION}", served())]
    WorldVersion {
        /// File or name.
        origin: String,
        /// What the component targets, e.g. `zoomhost:plugin@0.2.0`.
        found: String,
    },
    /// Does not export the plugin interface at all.
    #[error("{origin}: is a component but not a zoomhost plugin: it does not export {} (exports: {exports})", served_guests())]
    NotAPlugin {
        /// File or name.
        origin: String,
        /// What it exports instead.
        exports: String,
    },
    /// Cranelift or validation failed.
    #[error("{origin}: failed to compile: {reason}")]
    Compile {
        /// File or name.
        origin: String,
        /// wasmtime's reason.
        reason: String,
    },
    /// Refused before compiling: too large or too complex for the plugin's limits.
    #[error("{origin}: refused before compiling: {reason}")]
    Shape {
        /// File or name.
        origin: String,
        /// Which figure is over which limit.
        reason: String,
    },
    /// Imports something the host does not provide.
    #[error("{origin}: failed to link: {reason}")]
    Link {
        /// File or name.
        origin: String,
        /// wasmtime's reason.
        reason: String,
    },
}

/// A component compiled and linked, ready to instantiate any number of times.
pub struct CompiledPlugin {
    /// Where it came from (file path or name), for messages.
    pub origin: String,
    pub(crate) pre: GuestPre,
}

impl CompiledPlugin {
    /// The world version the component was built for.
    pub fn world_version(&self) -> WorldVersion {
        self.pre.version()
    }
}

/// The served guest interfaces for messages:
/// `zoomhost:plugin/guest@0.2.0 or zoomhost:plugin/guest@0.1.0`.
fn served_guests() -> String {
    SERVED_VERSIONS
        .iter()
        .map(|v| format!("{WORLD_PACKAGE}/guest@{v}"))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The served versions for messages: `zoomhost:plugin@0.2.0 and zoomhost:plugin@0.1.0`.
fn served() -> String {
    SERVED_VERSIONS
        .iter()
        .map(|v| format!("{WORLD_PACKAGE}@{v}"))
        .collect::<Vec<_>>()
        .join(" and ")
}

impl std::fmt::Debug for CompiledPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPlugin")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// The engine, linker and limits shared by every plugin.
pub struct Runtime {
    engine: Engine,
    linker: Linker<StoreState>,
    limits: Limits,
    /// The largest linear memory an instance may have (the pool's slot size).
    max_memory_bytes: usize,
    /// Component instances the pool holds (see [`RuntimeConfig::pool_slots`]).
    pool_slots: usize,
    pooling: bool,
    ticker: Arc<EpochTicker>,
    /// Held through each compile: one at a time.
    compiling: Mutex<()>,
    /// The host's stream control, shared by every plugin's store.
    control: Arc<ControlSlot>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("pooling", &self.pooling)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker.stop();
    }
}

/// Set to `on-demand` to allocate instances on demand instead of from the pool (for
/// machines that cannot reserve the pool's address space, and to test both allocators).
pub const ALLOCATOR_ENV: &str = "ZOOMHOST_ALLOCATOR";

fn on_demand_requested() -> bool {
    std::env::var(ALLOCATOR_ENV).is_ok_and(|v| v.trim() == "on-demand")
}

pub(crate) fn base_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    // One compile uses one core; the other is left to deliveries.
    config.parallel_compilation(false);
    config
}

impl Runtime {
    /// Builds the engine (pooling allocator, or on-demand where pooling cannot reserve
    /// its memory), the linker, and starts the epoch ticker. The pool's slots are sized
    /// for the largest memory and tables any plugin of `config` may have.
    pub fn new(config: &RuntimeConfig) -> anyhow::Result<Self> {
        let limits = &config.limits;
        let all = || std::iter::once(limits).chain(config.plugins.values().map(|g| &g.limits));
        let max_memory_bytes = all().map(Limits::memory_bytes).max().unwrap_or(0);
        let max_table_elements = all().map(|l| l.table_elements).max().unwrap_or(0);
        let pool_slots = config.pool_slots();
        let slots = u32::try_from(pool_slots).unwrap_or(u32::MAX);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(slots)
            .total_core_instances(slots.saturating_mul(16))
            .total_memories(slots.saturating_mul(4))
            .total_tables(slots.saturating_mul(8))
            .total_stacks(slots)
            .max_memory_size(max_memory_bytes)
            .table_elements(usize::try_from(max_table_elements).unwrap_or(usize::MAX));
        let mut config = base_config();
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let pooled = if on_demand_requested() {
            Err(anyhow::anyhow!("{ALLOCATOR_ENV}=on-demand"))
        } else {
            Engine::new(&config).map_err(anyhow::Error::from)
        };
        let (engine, pooling) = match pooled {
            Ok(engine) => (engine, true),
            Err(e) => {
                tracing::warn!("pooling allocator not used ({e}); allocating instances on demand");
                let config = base_config();
                (
                    Engine::new(&config).map_err(|e| anyhow::anyhow!("creating engine: {e}"))?,
                    false,
                )
            }
        };
        let mut linker: Linker<StoreState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| anyhow::anyhow!("linking WASI: {e}"))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| anyhow::anyhow!("linking wasi:http: {e}"))?;
        bindings::zoomhost::plugin::host::add_to_linker::<_, HasSelf<StoreState>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| anyhow::anyhow!("linking zoomhost host interface: {e}"))?;
        bindings::zoomhost::plugin::stream_control::add_to_linker::<_, HasSelf<StoreState>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| anyhow::anyhow!("linking zoomhost stream-control interface: {e}"))?;
        bindings::v0_1::zoomhost::plugin0_1_0::host::add_to_linker::<_, HasSelf<StoreState>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| anyhow::anyhow!("linking zoomhost host interface 0.1.0: {e}"))?;

        tracing::debug!(
            pooling,
            pool_slots,
            memory_mib = limits.memory_mib,
            pool_slot_mib = max_memory_bytes >> 20,
            event_deadline_ms = limits.event_deadline_ms,
            media_deadline_ms = limits.media_deadline_ms,
            "wasm runtime ready"
        );
        let ticker = EpochTicker::start(&engine)?;
        Ok(Self {
            engine,
            linker,
            limits: limits.clone(),
            max_memory_bytes,
            pool_slots,
            pooling,
            ticker,
            compiling: Mutex::new(()),
            control: Arc::new(ControlSlot::default()),
        })
    }

    /// Gives plugins' `stream-control` requests to `control` (the RTMS client), or, with
    /// `None`, answers them "no RTMS client in this host". Takes effect on the next call.
    pub fn set_stream_control(&self, control: Option<Arc<dyn zoomhost_types::StreamControl>>) {
        self.control.set(control);
    }

    /// The slot plugins' stores read the stream control from.
    pub(crate) fn control(&self) -> Arc<ControlSlot> {
        self.control.clone()
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The epoch ticker: every plugin call holds [`EpochTicker::call`] while it runs.
    pub(crate) fn ticker(&self) -> Arc<EpochTicker> {
        self.ticker.clone()
    }

    /// Limits applied to instances.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The largest linear memory an instance may have, fixed at start.
    pub fn max_memory_bytes(&self) -> usize {
        self.max_memory_bytes
    }

    /// Component instances alive at once the host allows over all plugins: the pool's
    /// size, fixed at start from the config (also enforced with the on-demand allocator).
    pub fn pool_slots(&self) -> usize {
        self.pool_slots
    }

    /// Whether the pooling allocator is in use.
    pub fn pooling(&self) -> bool {
        self.pooling
    }

    /// Checks `bytes` against `limits`, then validates, compiles and links them. CPU-heavy:
    /// call it off the async threads (e.g. in `spawn_blocking`). Compiles run one at a
    /// time; the shape check does not wait for them.
    pub fn compile(
        &self,
        bytes: &[u8],
        origin: &str,
        limits: &Limits,
    ) -> Result<CompiledPlugin, LoadError> {
        let origin = origin.to_string();
        if !bytes.starts_with(b"\0asm") {
            return Err(LoadError::NotWasm { origin });
        }
        if wasmparser::Parser::is_core_wasm(bytes) {
            return Err(LoadError::CoreModule { origin });
        }
        precheck::check(bytes, &shape_limits(limits)).map_err(|e| LoadError::Shape {
            origin: origin.clone(),
            reason: e.to_string(),
        })?;
        let _one_at_a_time = self.compiling.lock().unwrap_or_else(|p| p.into_inner());
        let component = Component::new(&self.engine, bytes).map_err(|e| LoadError::Compile {
            origin: origin.clone(),
            reason: format!("{e:#}"),
        })?;
        let version = check_world(&self.engine, &component, &origin)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link {
                origin: origin.clone(),
                reason: format!("{e:#}"),
            })?;
        let pre = GuestPre::new(version, pre).map_err(|e| LoadError::Link {
            origin: origin.clone(),
            reason: format!("{e:#}"),
        })?;
        Ok(CompiledPlugin { origin, pre })
    }
}

/// The pre-compile figures of `limits`.
fn shape_limits(limits: &Limits) -> ShapeLimits {
    ShapeLimits {
        max_component_bytes: limits.max_component_bytes(),
        max_modules: limits.max_modules,
        max_functions: limits.max_functions,
        max_code_bytes: limits.max_code_bytes,
        max_data_bytes: limits.max_data_bytes,
        max_core_instances: u64::from(limits.max_core_instances),
        max_component_instances: limits.max_component_instances,
    }
}

/// Checks that the component exports `zoomhost:plugin/guest` at a version this host
/// serves and returns it, naming the component's and the served versions when it does
/// not.
fn check_world(
    engine: &Engine,
    component: &Component,
    origin: &str,
) -> Result<WorldVersion, LoadError> {
    let ty = component.component_type();
    let prefix = format!("{WORLD_PACKAGE}/guest");
    let mut names = Vec::new();
    for (name, _) in ty.exports(engine) {
        if let Some(rest) = name.strip_prefix(&prefix) {
            let version = rest.strip_prefix('@').unwrap_or("(unversioned)");
            if let Some(served) = WorldVersion::from_version(version) {
                return Ok(served);
            }
            return Err(LoadError::WorldVersion {
                origin: origin.to_string(),
                found: format!("{WORLD_PACKAGE}@{version}"),
            });
        }
        names.push(name.to_string());
    }
    Err(LoadError::NotAPlugin {
        origin: origin.to_string(),
        exports: if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        },
    })
}
