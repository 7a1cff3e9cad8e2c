//! The config values the operator set for this plugin (`${ENV}` already expanded).

use crate::bindings::zoomhost::plugin::host;

/// The value of `key`, if the operator set it.
pub fn get(key: &str) -> Option<String> {
    host::config_get(key)
}

/// The value of `key`, or `default` when it is not set.
pub fn get_or(key: &str, default: &str) -> String {
    get(key).unwrap_or_else(|| default.to_string())
}

/// Every key the operator set for this plugin.
pub fn keys() -> Vec<String> {
    host::config_keys()
}

/// Time left before the deadline of the call in progress (an event or a media frame).
///
/// A plugin that waits on the network checks this before a retry: the host kills an
/// instance that runs past its deadline. `None` only on a host too old to tell.
pub fn time_left() -> Option<std::time::Duration> {
    host::config_get("zoomhost.remaining_ms")
        .and_then(|ms| ms.parse().ok())
        .map(std::time::Duration::from_millis)
}
