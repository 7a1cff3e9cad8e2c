//! zoomhost's plugin runtime: plugins are WebAssembly components run by wasmtime, each in
//! a sandbox with budgets for everything the host holds on its behalf, each owned by an
//! actor that takes deliveries from a bounded mailbox, in order.
//!
//! ```text
//!  InputSink (zoomhost-types) ── Router ── per-instance Mailbox ── Actor ── LiveInstance
//!    events, streams, frames      │ patterns index,      bounded,      restarts,   wasmtime
//!    (plain types)                │ shard by meeting,    drop policy   quarantine, Store +
//!                                 │ converts to WIT      per kind      swaps       limits
//!                                 ▼ types, moving buffers
//!  PluginHost (registry): loads, hot-swaps and unloads plugins off the delivery path;
//!  `reload::watch` applies changes of the plugins folder and the config file.
//! ```
//!
//! A plugin runs `[plugins.NAME] instances` instances (default 1), each its own mailbox,
//! actor, counters and state; [`shard`] picks the instance of each delivery from its
//! meeting, so one meeting's events and media stay on one instance, in order, while
//! different instances run in parallel.
//!
//! [`Router::dispatch_event_tracked`] returns a [`Completion`] that resolves once every
//! plugin the event was queued for has finished its call for it (whatever the outcome)
//! or the mailbox policy dropped it: each queued copy carries a share of it
//! ([`mailbox::Ticket`]) that goes away with the copy. A cluster worker acknowledges an
//! event's message then; the runtime does not know about NATS.
//!
//! Modules: `engine` ([`Runtime`]: wasmtime engine, linker, compile after a shape check
//! in `precheck` and the world check), `epoch` (the ticker that ticks only while a call
//! is in flight, woken by a kernel timer each call arms while calls are sparse and
//! looking periodically while they are dense), `store`/`limiter`/`http_gate` (the sandbox: WASI
//! without files or sockets, memory and table budgets over all memories, handle and
//! host-call budgets, outbound HTTP gated by grants, capped and scoped to the call),
//! `stream_control` (plugins' requests on RTMS streams, gated by the `stream_control`
//! grant, handed to the host's [`zoomhost_types::StreamControl`]), [`instance`] (one
//! instance: calls under deadlines), `actor` (failures, restarts, swaps), [`mailbox`],
//! [`router`], [`shard`] (which instance a meeting goes to), `plugin_host`
//! ([`PluginHost`]: load, swap, unload; the instance pool's slots), [`reload`], and
//! `config`/`limits` ([`RuntimeConfig`], [`Limits`]: what the operator configures).
//! Private modules are reached through the re-exports below; the public ones are what
//! the binary and the tests drive directly.
//!
//! World versions: the host serves `zoomhost:plugin@0.2.0` (`wit/plugin.wit`) and the
//! released 0.1.0 (`wit/v0.1/plugin.wit`); [`bindings`] holds both. The router converts
//! each input once into the 0.2.0 types; `guest` dispatches each call to the bindings of
//! the instance's version, and `compat` converts for a 0.1.0 instance at that boundary
//! (what 0.1.0 lacks is left out; a phone stream is given as `contact-center`). An
//! instance of either version swaps for one of the other on hot reload.
//!
//! It knows nothing of sockets or Zoom's wire formats: sources hand it plain
//! [`zoomhost_types`] through [`zoomhost_types::InputSink`], which [`Router`] implements.

#![warn(missing_docs)]

mod actor;
pub mod bindings;
mod capabilities;
mod compat;
mod config;
mod convert;
mod declared;
mod engine;
mod epoch;
mod guest;
mod http_gate;
pub mod identity;
pub mod instance;
mod limiter;
mod limits;
pub mod mailbox;
mod output;
mod plugin_host;
mod precheck;
pub mod reload;
pub mod router;
pub mod shard;
mod stats;
mod store;
mod stream_control;

pub use actor::SwapReport;
pub use capabilities::HostPattern;
pub use config::{
    auto_instances, InstancesSetting, PluginGrant, ResolvedGrant, RuntimeConfig, MAX_INSTANCES,
    POOL_MAX_SLOTS, POOL_MIN_SLOTS, POOL_UNNAMED_SLOTS, SLOTS_PER_INSTANCE,
};
pub use declared::Subscriptions;
pub use engine::{CompiledPlugin, LoadError, Runtime};
pub use epoch::EPOCH_TICK;
pub use identity::{LogSink, PluginIdentity, PluginLogRecord};
pub use limiter::BudgetExceeded;
pub use limits::{Limits, HTTP_BODY_CHUNK, OUTBOUND_CONNECTION_BYTES};
pub use mailbox::Completion;
pub use plugin_host::{plugin_name, InstanceInfo, LoadOutcome, PluginHost, PluginInfo};
pub use router::{EventPattern, MediaStream, Route, Router};
pub use stats::{
    CallHistogram, FailureReason, HistogramSnapshot, PluginStats, StatsSnapshot, CALL_BUCKETS,
};
pub use stream_control::NO_RTMS_CLIENT;
