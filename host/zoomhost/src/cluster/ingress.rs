//! The ingress leader's guarded resource: Zoom's event WebSocket, which runs only while
//! this node holds the ingress lease ([`super::lease`]). Each term of leadership runs a
//! fresh [`EventStream`]; losing the lease closes it (gracefully, then by abort), and
//! dropping the holder (a node dropped without shutdown) aborts it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use zoomhost_zoom::events::EventStream;

/// Builds the event WebSocket client for a new term.
pub type StreamFactory = Box<dyn Fn() -> EventStream + Send + Sync>;

/// Runs the event WebSocket while the lease is held.
pub struct EventStreamHolder {
    make: StreamFactory,
    running: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    terms: Arc<AtomicU64>,
}

impl EventStreamHolder {
    /// A holder building its client with `make`; `terms` counts the streams started.
    pub fn new(make: StreamFactory, terms: Arc<AtomicU64>) -> Self {
        Self {
            make,
            running: None,
            terms,
        }
    }
}

impl super::lease::Holder for EventStreamHolder {
    fn start(&mut self) {
        let stream = (self.make)();
        let (stop, stopped) = watch::channel(false);
        self.terms.fetch_add(1, Ordering::Relaxed);
        tracing::info!("ingress leader: opening the event WebSocket");
        let task = tokio::spawn(async move {
            if let Err(e) = stream.run(stopped).await {
                tracing::error!("event WebSocket stopped: {e:#}");
            }
        });
        self.running = Some((stop, task));
    }

    async fn stop(&mut self, within: Duration) {
        let Some((stop, mut task)) = self.running.take() else {
            return;
        };
        tracing::info!("ingress lease gone: closing the event WebSocket");
        let _ = stop.send(true);
        if tokio::time::timeout(within, &mut task).await.is_err() {
            tracing::warn!(
                "the event WebSocket did not close within {} ms: aborted",
                within.as_millis()
            );
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for EventStreamHolder {
    fn drop(&mut self) {
        if let Some((_, task)) = self.running.take() {
            task.abort();
        }
    }
}
