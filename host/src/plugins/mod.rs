//! Plugins at run time: the wasmtime runtime, one actor per plugin, the registry, hot
//! reload, and the capabilities the operator grants.

pub mod actor;
pub mod bindings;
pub mod capabilities;
mod declared;
mod http_gate;
pub mod identity;
pub mod instance;
mod limiter;
pub mod mailbox;
mod output;
mod precheck;
pub mod registry;
pub mod reload;
pub mod runtime;
pub mod stats;
mod store;

pub use identity::{LogSink, PluginLogRecord};
pub use limiter::BudgetExceeded;
pub use registry::{plugin_name, LoadOutcome, PluginHost, PluginInfo};
pub use runtime::{LoadError, Runtime};
pub use stats::StatsSnapshot;
