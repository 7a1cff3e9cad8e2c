//! Host-side bindings for the `zoomhost:plugin` worlds the host serves, generated from
//! `wit/`: the current world (0.2.0, `wit/plugin.wit`) at this module's root, and the
//! released 0.1.0 world (`wit/v0.1/plugin.wit`) in [`v0_1`]. Deliveries are made in the
//! current world's types; `compat` converts them for 0.1.0 components.

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

/// The released world `zoomhost:plugin@0.1.0`, still served: a component built for it
/// loads, and gets what 0.1.0 defines (see `wit/v0.1/plugin.wit`).
pub mod v0_1 {
    wasmtime::component::bindgen!({
        // Both packages resolve together (0.1.0 uses the WASI packages in `wit/deps`);
        // with two versions present, the generated modules carry the version
        // (`zoomhost::plugin0_1_0`).
        path: ["../../wit", "../../wit/v0.1/plugin.wit"],
        world: "zoomhost:plugin/plugin@0.1.0",
        exports: { default: async },
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
    });
}

/// The package every served world belongs to.
pub const WORLD_PACKAGE: &str = "zoomhost:plugin";
/// The current world version (`wit/plugin.wit`): what the SDK builds for.
pub const WORLD_VERSION: &str = "0.2.0";
/// Every world version this host serves, newest first.
pub const SERVED_VERSIONS: [&str; 2] = [WORLD_VERSION, "0.1.0"];

/// The world version a component was built for, among those served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorldVersion {
    /// `zoomhost:plugin@0.2.0`, the current world.
    V0_2,
    /// `zoomhost:plugin@0.1.0`, served through the compatibility conversions.
    V0_1,
}

impl WorldVersion {
    /// The version number, e.g. `0.2.0`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorldVersion::V0_2 => WORLD_VERSION,
            WorldVersion::V0_1 => "0.1.0",
        }
    }

    /// The served version named `version`, if it is served.
    pub fn from_version(version: &str) -> Option<Self> {
        match version {
            WORLD_VERSION => Some(WorldVersion::V0_2),
            "0.1.0" => Some(WorldVersion::V0_1),
            _ => None,
        }
    }
}

impl std::fmt::Display for WorldVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{WORLD_PACKAGE}@{}", self.as_str())
    }
}

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
