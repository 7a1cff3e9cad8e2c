//! RTMS streams owned by the worker that owns their meeting's partition, with their
//! state in the JetStream key-value bucket [`RTMS_BUCKET`], so the partition's next
//! owner resumes them.
//!
//! **Who opens a stream.** In cluster mode the RTMS client is not tapped into the input
//! path: an ingress-only node runs none, and a worker shows each event it delivers from
//! a partition it owns to its RTMS client ([`RtmsOwnership::on_event`]) before the
//! plugins get it. So `*.rtms_started` opens the stream on the worker owning the
//! meeting's partition, once (a `role = "all"` node's ingress half does not open it).
//!
//! **What is saved.** The client reports each stream's
//! [`zoomhost_zoom::rtms::SavedStream`] through [`KvStreamStates`] (its
//! [`StreamStateSink`]): stream id, session id, the product (the start event's name),
//! the signaling URLs, the start's `event_ts`, and the progress (the newest timestamp
//! delivered per media kind and speaker or channel). No secret is saved: the resuming
//! node signs its handshakes with its own credentials. The key is
//! `<partition>.<stream id>` ([`stream_key`]; the partition is the session id's, the
//! same as its events'). It is written when the stream starts, at once when Zoom moves
//! it (failover, new URLs), at most every [`PROGRESS_EVERY`] while frames flow, and once
//! more when it is handed over; it is deleted when the stream ends for good. Writes go
//! through one queue and one writer task, in order.
//!
//! **Resuming.** When a worker acquires a partition (a rebalance, a drained node's
//! hand-over, or a crashed node's leases expiring), it reads the partition's saved
//! streams ([`RtmsOwnership::resume`]) and resumes each: a re-handshake at once against
//! the saved URLs, as after Zoom's `*.rtms_interrupted`, within Zoom's 60 s window, so
//! Zoom replays the audio it buffered meanwhile and the restored progress drops what the
//! previous owner already delivered. After a crash the saved progress may be up to
//! [`PROGRESS_EVERY`] old: frames the dead node delivered in that last second reach the
//! new owner's plugins again (at-least-once across a crash, as for events); frames in
//! flight to the dead node that Zoom had already written are lost with it (Zoom replays
//! only what it buffered while nobody was connected).
//!
//! **Handing over.** A worker releasing a partition (draining on SIGTERM or shutdown,
//! rebalancing, or a lease it could not renew) first hands its streams over
//! ([`RtmsOwnership::hand_over`]): each delivers what its sockets hold, saves its final
//! progress, and drops its sockets without a close frame and without `STREAM_CLOSE_REQ`;
//! the key stays for the next owner, and the lease is released only after the writes
//! were flushed. Nothing is lost or repeated across a graceful hand-over.
//!
//! **Plugins.** A plugin's media session does not move: the old owner's session closes
//! (hand-over) or vanishes (crash), and the new owner's plugin instance opens a new
//! session for the same stream id, without the old instance's in-memory state. A plugin
//! that needs continuity keeps it outside (its own store, keyed by stream id).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, kv};
use futures_util::StreamExt as _;
use tokio::sync::{mpsc, oneshot, watch};
use zoomhost_types::Event;
use zoomhost_zoom::rtms::{RtmsManager, SavedStream, StreamStateSink};

use super::pause;

/// The key-value bucket holding the RTMS streams' state.
pub const RTMS_BUCKET: &str = "zoomhost_rtms_streams";
/// How often a stream's progress is saved at most.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// The key of a stream's state: `<partition>.<stream id>` (characters a key cannot hold
/// become `_`).
pub fn stream_key(partition: u32, stream_id: &str) -> String {
    let id = super::key_safe(stream_id);
    format!("{partition}.{}", if id.is_empty() { "_" } else { &id })
}

/// The partition a stream belongs to: its session id's, as for its events.
pub fn partition_of(saved: &SavedStream, partitions: u32) -> u32 {
    super::partition::of_meeting(Some(&saved.meeting_uuid), partitions)
}

/// Opens the bucket, creating it when missing (file storage, one value per key, kept in
/// `replicas` copies).
pub async fn open_bucket(js: &jetstream::Context, replicas: usize) -> anyhow::Result<kv::Store> {
    if let Ok(store) = js.get_key_value(RTMS_BUCKET).await {
        return Ok(store);
    }
    js.create_key_value(kv::Config {
        bucket: RTMS_BUCKET.to_string(),
        description: "zoomhost RTMS streams (state for the partition's next owner)".to_string(),
        history: 1,
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .with_context(|| format!("opening the key-value bucket {RTMS_BUCKET}"))
}

/// Counters of a node's RTMS state.
#[derive(Debug, Default)]
pub struct RtmsStateStats {
    /// States written.
    pub written: AtomicU64,
    /// States deleted (streams that ended).
    pub deleted: AtomicU64,
    /// Writes or deletes that failed after retries.
    pub failed: AtomicU64,
    /// Streams resumed from saved state.
    pub resumed: AtomicU64,
    /// Streams handed over to the next owner.
    pub handed_over: AtomicU64,
    /// How long the last resume took from acquiring the partition to the streams
    /// launched (reading the bucket), in ms.
    pub last_resume_ms: AtomicU64,
}

/// One queued write.
enum Op {
    Put(String, bytes::Bytes),
    Delete(String),
    Flush(oneshot::Sender<()>),
}

/// The [`StreamStateSink`] of a worker: queues each state for the writer task.
pub struct KvStreamStates {
    ops: mpsc::UnboundedSender<Op>,
    partitions: u32,
}

impl KvStreamStates {
    /// A sink for `partitions` partitions and the receiving end for [`write`].
    fn new(partitions: u32) -> (Arc<Self>, mpsc::UnboundedReceiver<Op>) {
        let (ops, rx) = mpsc::unbounded_channel();
        (Arc::new(Self { ops, partitions }), rx)
    }

    /// Waits (up to `within`) until every write queued before is done.
    pub async fn flush(&self, within: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.ops.send(Op::Flush(tx)).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(within, rx).await, Ok(Ok(())))
    }

    fn key(&self, state: &SavedStream) -> String {
        stream_key(partition_of(state, self.partitions), &state.stream_id)
    }
}

impl StreamStateSink for KvStreamStates {
    fn saved(&self, state: &SavedStream) {
        match serde_json::to_vec(state) {
            Ok(json) => {
                let _ = self.ops.send(Op::Put(self.key(state), json.into()));
            }
            Err(e) => tracing::error!(stream = %state.stream_id, "RTMS state not saved: {e}"),
        }
    }

    fn ended(&self, state: &SavedStream) {
        let _ = self.ops.send(Op::Delete(self.key(state)));
    }
}

/// Applies the queued writes in order until `stop` turns true (then the rest still
/// queued), each tried three times; the bucket is (re-)opened as needed (made with
/// `replicas` when missing).
async fn write(
    js: jetstream::Context,
    replicas: usize,
    mut ops: mpsc::UnboundedReceiver<Op>,
    stats: Arc<RtmsStateStats>,
    mut stop: watch::Receiver<bool>,
) {
    let mut store: Option<kv::Store> = None;
    let mut stopping = false;
    loop {
        let op = if stopping {
            match ops.try_recv() {
                Ok(op) => op,
                Err(_) => return,
            }
        } else {
            tokio::select! {
                op = ops.recv() => match op {
                    Some(op) => op,
                    None => return,
                },
                _ = stop.wait_for(|s| *s) => {
                    stopping = true;
                    continue;
                }
            }
        };
        let (key, value) = match op {
            Op::Flush(done) => {
                let _ = done.send(());
                continue;
            }
            Op::Put(key, value) => (key, Some(value)),
            Op::Delete(key) => (key, None),
        };
        let mut done = false;
        for attempt in 0..3 {
            if attempt > 0 && pause(Duration::from_millis(200), &mut stop).await && stopping {
                break;
            }
            if store.is_none() {
                match open_bucket(&js, replicas).await {
                    Ok(s) => store = Some(s),
                    Err(e) => {
                        tracing::warn!("RTMS state: {e:#}");
                        continue;
                    }
                }
            }
            let Some(kv) = &store else { continue };
            let result = match &value {
                Some(value) => kv
                    .put(&key, value.clone())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                None => kv.delete(&key).await.map_err(|e| e.to_string()),
            };
            match result {
                Ok(()) => {
                    done = true;
                    break;
                }
                Err(e) => {
                    tracing::warn!(key = %key, "RTMS state: writing {RTMS_BUCKET} failed: {e}");
                    store = None;
                }
            }
        }
        let counter = match (done, value.is_some()) {
            (false, _) => &stats.failed,
            (true, true) => &stats.written,
            (true, false) => &stats.deleted,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The saved streams of `partitions`, read from the bucket.
pub async fn load(
    store: &kv::Store,
    partitions: &BTreeSet<u32>,
) -> anyhow::Result<Vec<SavedStream>> {
    let mut keys = store
        .keys()
        .await
        .with_context(|| format!("listing {RTMS_BUCKET}"))?;
    let mut wanted = Vec::new();
    while let Some(key) = keys.next().await {
        let key = key.with_context(|| format!("listing {RTMS_BUCKET}"))?;
        let partition = key.split_once('.').and_then(|(p, _)| p.parse::<u32>().ok());
        if partition.is_some_and(|p| partitions.contains(&p)) {
            wanted.push(key);
        }
    }
    let mut out = Vec::new();
    for key in wanted {
        let Some(value) = store
            .get(&key)
            .await
            .with_context(|| format!("reading {key} from {RTMS_BUCKET}"))?
        else {
            continue;
        };
        match serde_json::from_slice::<SavedStream>(&value) {
            Ok(saved) => out.push(saved),
            Err(e) => {
                tracing::warn!(key = %key, "RTMS state in {RTMS_BUCKET} unreadable, skipped: {e}")
            }
        }
    }
    Ok(out)
}

/// A worker's RTMS streams: its client, the sink saving their state, and the bucket.
pub struct RtmsOwnership {
    manager: Arc<RtmsManager>,
    states: Arc<KvStreamStates>,
    js: jetstream::Context,
    /// The bucket's replicas, when it must be made again.
    replicas: usize,
    partitions: u32,
    stats: Arc<RtmsStateStats>,
}

impl std::fmt::Debug for RtmsOwnership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtmsOwnership")
            .field("streams", &self.manager.active())
            .finish_non_exhaustive()
    }
}

/// A running writer: stop it with the sender, then await the task.
pub(crate) type Writer = (watch::Sender<bool>, tokio::task::JoinHandle<()>);

impl RtmsOwnership {
    /// Saves `manager`'s streams into the bucket from now on (the writer task is
    /// returned for the member to stop last); `replicas` for the bucket when it must be
    /// made again.
    pub(crate) fn start(
        js: jetstream::Context,
        replicas: usize,
        manager: Arc<RtmsManager>,
        partitions: u32,
        stats: Arc<RtmsStateStats>,
    ) -> (Arc<Self>, Writer) {
        let (states, ops) = KvStreamStates::new(partitions);
        manager.set_state_sink(states.clone(), PROGRESS_EVERY);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(write(js.clone(), replicas, ops, stats.clone(), stopped));
        let ownership = Arc::new(Self {
            manager,
            states,
            js,
            replicas,
            partitions,
            stats,
        });
        (ownership, (stop, task))
    }

    /// Shows a delivered event to the RTMS client (opens, fails over, interrupts and
    /// stops streams).
    pub fn on_event(&self, event: &Event) {
        self.manager.on_event(event);
    }

    /// Resumes the saved streams of `partitions` (just acquired); returns how many.
    pub async fn resume(&self, partitions: &BTreeSet<u32>) -> anyhow::Result<usize> {
        if partitions.is_empty() {
            return Ok(0);
        }
        let started = Instant::now();
        let store = open_bucket(&self.js, self.replicas).await?;
        let saved = load(&store, partitions).await?;
        let mut count = 0;
        for state in saved {
            let id = state.stream_id.clone();
            if self.manager.resume(state) {
                count += 1;
                self.stats.resumed.fetch_add(1, Ordering::Relaxed);
                tracing::info!(stream = %id, "RTMS stream taken over with its partition");
            }
        }
        self.stats
            .last_resume_ms
            .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        Ok(count)
    }

    /// Hands the streams of `partitions` over to their next owner and waits until their
    /// final state is written (each step bounded by `within`); returns how many.
    pub async fn hand_over(&self, partitions: &BTreeSet<u32>, within: Duration) -> usize {
        let n = self.partitions;
        let count = self
            .manager
            .hand_over(|s| partitions.contains(&partition_of(s, n)), within)
            .await;
        if count > 0 {
            self.stats
                .handed_over
                .fetch_add(count as u64, Ordering::Relaxed);
            if !self.states.flush(within).await {
                tracing::warn!("RTMS state of handed-over streams not flushed within {within:?}");
            }
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_partition_then_stream() {
        assert_eq!(stream_key(7, "abc123"), "7.abc123");
        assert_eq!(stream_key(0, "a/b.c"), "0.a_b_c");
        assert_eq!(stream_key(3, ""), "3._");
        let saved = SavedStream {
            stream_id: "s".into(),
            meeting_uuid: "m==".into(),
            started_event: "meeting.rtms_started".into(),
            server_urls: vec!["wss://a".into()],
            event_ts: 1,
            progress: vec![],
        };
        assert_eq!(
            partition_of(&saved, 64),
            super::super::partition::of_event_payload(r#"{"meeting_uuid":"m=="}"#, 64)
        );
    }
}
