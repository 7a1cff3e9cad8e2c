//! zoomhost: keeps a Zoom account's live connections open and routes every event and
//! media frame into sandboxed WebAssembly plugins.
//!
//! Data flows one way: **source → [`router`] → plugin mailbox → component**.

#![warn(missing_docs)]

pub mod bench;
pub mod cli;
pub mod config;
pub mod dev;
pub mod host;
pub mod inputs;
pub mod replay;
pub mod scaffold;
pub mod wasm_build;
