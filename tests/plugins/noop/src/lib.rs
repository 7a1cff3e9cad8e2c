//! `noop`: subscribes to every event and to audio, and does nothing with them. For
//! benchmarks of the host's per-delivery overhead.

use zoomhost_sdk::{Event, MediaKind, MediaSession, Metadata, Plugin, StreamInfo};

struct Noop;

impl Plugin for Noop {
    type Session = Idle;

    fn metadata() -> Metadata {
        Metadata::new("noop", env!("CARGO_PKG_VERSION"))
            .events(["*"])
            .media([MediaKind::Audio])
    }

    fn handle_event(_event: Event) -> Result<(), String> {
        Ok(())
    }
}

/// Ignores every frame (all handlers keep their defaults).
struct Idle;

impl MediaSession for Idle {
    fn open(_info: StreamInfo) -> Self {
        Idle
    }
}

zoomhost_sdk::export_plugin!(Noop);
