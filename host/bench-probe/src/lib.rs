//! `latency-probe`: a pass-through audio plugin for `zoomhost bench`.
//!
//! Every audio frame is received and measured: its latency is the plugin's wall clock
//! at receipt minus the frame's `timestamp` (RTMS timestamps are the sender's wall clock,
//! in milliseconds). When the session closes it logs one line the bench parses:
//!
//! ```text
//! probe stream=<id> frames=<n> bytes=<n> hist=<ms>:<count>,<ms>:<count>,...
//! ```
//!
//! Latencies are bucketed by whole milliseconds (0..=999, the last bucket holding
//! everything slower), so memory per session is fixed whatever its length.
//!
//! With the config value `latency = "off"` (`zoomhost bench --count-only`, and unpaced
//! runs, whose timestamps are synthetic) it only counts frames and bytes: no clock read
//! (a host call) per frame, as a callback that only counts does.

use std::time::{SystemTime, UNIX_EPOCH};

use zoomhost_sdk::{
    info, AudioFrame, Event, MediaKind, MediaSession, Metadata, Plugin, StreamInfo,
};

struct Probe;

impl Plugin for Probe {
    type Session = Measure;

    fn metadata() -> Metadata {
        Metadata::new("latency-probe", env!("CARGO_PKG_VERSION")).media([MediaKind::Audio])
    }

    fn handle_event(_event: Event) -> Result<(), String> {
        Ok(())
    }
}

/// One stream's counts and latency histogram.
struct Measure {
    stream: String,
    frames: u64,
    bytes: u64,
    /// Whether each frame's latency is measured (`latency` is not `off`).
    measure: bool,
    hist: Vec<u32>,
}

const BUCKETS: usize = 1000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl MediaSession for Measure {
    fn open(info: StreamInfo) -> Self {
        Measure {
            stream: info.stream_id,
            frames: 0,
            bytes: 0,
            measure: zoomhost_sdk::config::get("latency").as_deref() != Some("off"),
            hist: vec![0; BUCKETS],
        }
    }

    fn on_audio(&mut self, frame: AudioFrame) -> Result<(), String> {
        self.frames += 1;
        self.bytes += frame.data.len() as u64;
        if !self.measure {
            return Ok(());
        }
        let latency = now_ms().saturating_sub(frame.timestamp) as usize;
        self.hist[latency.min(BUCKETS - 1)] += 1;
        Ok(())
    }
}

impl Drop for Measure {
    fn drop(&mut self) {
        let hist: Vec<String> = self
            .hist
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(ms, n)| format!("{ms}:{n}"))
            .collect();
        info!(
            "probe stream={} frames={} bytes={} hist={}",
            self.stream,
            self.frames,
            self.bytes,
            hist.join(",")
        );
    }
}

zoomhost_sdk::export_plugin!(Probe);
