//! Logging through the host, which tags each record with the plugin's name.
//!
//! Plain functions take a `&str`; the crate-level macros [`trace!`](crate::trace),
//! [`debug!`](crate::debug), [`info!`](crate::info), [`warn!`](crate::warn) and
//! [`error!`](crate::error) take `format!` arguments.

use crate::bindings::zoomhost::plugin::host;
use crate::LogLevel;

/// Writes one record at `level`.
pub fn log(level: LogLevel, message: &str) {
    host::log(level, message);
}

/// Writes one record at trace level.
pub fn trace(message: &str) {
    log(LogLevel::Trace, message);
}

/// Writes one record at debug level.
pub fn debug(message: &str) {
    log(LogLevel::Debug, message);
}

/// Writes one record at info level.
pub fn info(message: &str) {
    log(LogLevel::Info, message);
}

/// Writes one record at warn level.
pub fn warn(message: &str) {
    log(LogLevel::Warn, message);
}

/// Writes one record at error level.
pub fn error(message: &str) {
    log(LogLevel::Error, message);
}

/// Logs `format!` arguments at trace level: `zoomhost_sdk::trace!("x = {x}")`.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::log::trace(&::std::format!($($arg)+)) };
}

/// Logs `format!` arguments at debug level: `zoomhost_sdk::debug!("x = {x}")`.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log::debug(&::std::format!($($arg)+)) };
}

/// Logs `format!` arguments at info level: `zoomhost_sdk::info!("x = {x}")`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log::info(&::std::format!($($arg)+)) };
}

/// Logs `format!` arguments at warn level: `zoomhost_sdk::warn!("x = {x}")`.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log::warn(&::std::format!($($arg)+)) };
}

/// Logs `format!` arguments at error level: `zoomhost_sdk::error!("x = {x}")`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log::error(&::std::format!($($arg)+)) };
}
