//! The host's input path. Sources hand everything to an [`Inputs`], which shows each
//! event to its taps (the RTMS client, which opens streams on `*.rtms_started`; the dev
//! view) and then passes it to the plugin runtime's router. This is where a source's
//! events reach another source: the router never calls back up.

use std::sync::{Arc, RwLock};

pub use zoomhost_types::EventTap;
use zoomhost_types::{Event, InputSink, StreamInfo, StreamSink};

/// The input sink the sources deliver into.
pub struct Inputs {
    sink: Arc<dyn InputSink>,
    taps: RwLock<Vec<EventTap>>,
}

impl std::fmt::Debug for Inputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inputs").finish_non_exhaustive()
    }
}

impl Inputs {
    /// Inputs passed on to `sink` (the runtime's router).
    pub fn new(sink: Arc<dyn InputSink>) -> Arc<Self> {
        Arc::new(Self {
            sink,
            taps: RwLock::default(),
        })
    }

    /// Adds a tap that sees every event from now on.
    pub fn tap(&self, tap: EventTap) {
        self.taps
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(tap);
    }
}

impl InputSink for Inputs {
    fn event(&self, event: Event) -> usize {
        for tap in self.taps.read().unwrap_or_else(|p| p.into_inner()).iter() {
            tap(&event);
        }
        self.sink.event(event)
    }

    fn open_stream(&self, info: StreamInfo) -> Box<dyn StreamSink> {
        self.sink.open_stream(info)
    }
}
