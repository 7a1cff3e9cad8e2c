//! Host-side bindings for the `zoomhost:plugin` world (generated from `wit/`).

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "zoomhost:plugin/plugin",
    exports: { default: async },
    with: {
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
    },
});

pub use exports::zoomhost::plugin::guest;
pub use zoomhost::plugin::types;

/// The world version this host serves, as written in `wit/plugin.wit`.
pub const WORLD_PACKAGE: &str = "zoomhost:plugin";
/// The world version this host serves.
pub const WORLD_VERSION: &str = "0.1.0";

impl types::MediaKind {
    /// Every media kind.
    pub const ALL: [types::MediaKind; 5] = [
        types::MediaKind::Audio,
        types::MediaKind::Transcript,
        types::MediaKind::Video,
        types::MediaKind::Share,
        types::MediaKind::Chat,
    ];

    /// The WIT name (`audio`, `transcript`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            types::MediaKind::Audio => "audio",
            types::MediaKind::Transcript => "transcript",
            types::MediaKind::Video => "video",
            types::MediaKind::Share => "share",
            types::MediaKind::Chat => "chat",
        }
    }

    /// Parses a WIT name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}
