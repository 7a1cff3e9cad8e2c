//! Publishing accepted events to the JetStream stream [`super::EVENT_STREAM`].
//!
//! The ingress node's input path hands every event it accepts (after its own local
//! de-duplication) to a bounded queue ([`Publisher::publish_acked`]: it never blocks a
//! source, and returns a receiver of the outcome, which the webhook receiver awaits
//! before it answers Zoom); one task publishes them, each on `zoomhost.events.<partition>`
//! ([`super::partition`]) with the event's content-derived id as `Nats-Msg-Id`.
//! Publishing runs in **one lane per partition**: a lane has one event in flight and
//! awaits JetStream's acknowledgement (retries included) before its next, so the events
//! of one meeting are stored in the order this node accepted them, while different
//! partitions publish concurrently (up to `partitions` events in flight), so the
//! acknowledgement round trip does not cap the node's rate. The stream's duplicate window (65
//! minutes by default) makes JetStream drop a second copy with the same id: a webhook
//! retry, the same event from the WebSocket and a webhook, or from two ingress nodes,
//! is stored once (the acknowledgement says `duplicate`, counted in
//! [`PublishStats::duplicates`]).
//!
//! A publish that fails (no connection, no acknowledgement in time, no stream) is retried
//! with exponential backoff up to `publish_attempts` times, the stream re-created (with
//! the same settings) before each retry; only then is the event counted as
//! lost and logged with its id and name. On shutdown the queue is drained first.
//!
//! The queue holds at most [`DEFAULT_MAX_PENDING`] events (`[cluster] max_pending`), so
//! a long NATS outage cannot grow an ingress node's memory without bound: past it a
//! webhook's event is refused at once (Zoom is answered 503 and retries it after 5, 20
//! and 60 minutes) and an event from the WebSocket, which Zoom does not resend, is
//! dropped, logged with its id and counted in [`PublishStats::overflow`].
//!
//! The message body is JSON: `{"id", "name", "event_ts", "source", "node", "payload"}`
//! with `payload` the event's payload object.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::collections::{HashMap, VecDeque};

use anyhow::Context as _;
use async_nats::jetstream::{self, message::PublishMessage};
use backon::{ExponentialBuilder, Retryable as _};
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use tokio::sync::{mpsc, oneshot, watch};
use zoomhost_types::{Event, EventSource, EventTap};

/// Counters of the publisher.
#[derive(Debug, Default)]
pub struct PublishStats {
    /// Events queued by the tap.
    pub queued: AtomicU64,
    /// Events stored by JetStream (acknowledged, not as a duplicate).
    pub published: AtomicU64,
    /// Events JetStream acknowledged as duplicates of one already stored.
    pub duplicates: AtomicU64,
    /// Publish attempts that failed and were retried.
    pub retries: AtomicU64,
    /// Events given up after every attempt failed (each logged as an error).
    pub lost: AtomicU64,
    /// Events refused because the queue was full (also counted in `lost`).
    pub overflow: AtomicU64,
}

impl PublishStats {
    /// Events queued and not yet acknowledged or given up.
    pub fn pending(&self) -> u64 {
        let done = self.published.load(Ordering::Relaxed)
            + self.duplicates.load(Ordering::Relaxed)
            + self.lost.load(Ordering::Relaxed);
        self.queued.load(Ordering::Relaxed).saturating_sub(done)
    }
}

/// Creates the event stream, or updates it to this node's settings (`replicas`: the
/// copies JetStream keeps, `[cluster] replicas`).
pub async fn ensure_stream(
    js: &jetstream::Context,
    duplicate_window: Duration,
    replicas: usize,
) -> anyhow::Result<()> {
    js.create_or_update_stream(jetstream::stream::Config {
        name: super::EVENT_STREAM.to_string(),
        description: Some("Zoom events accepted by zoomhost ingress nodes".to_string()),
        subjects: vec![format!("{}.>", super::EVENT_SUBJECT_PREFIX)],
        duplicate_window,
        // Kept a day past acceptance; workers consume them long before.
        max_age: Duration::from_secs(24 * 3600).max(duplicate_window),
        storage: jetstream::stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .with_context(|| format!("creating the JetStream stream {}", super::EVENT_STREAM))?;
    Ok(())
}

/// An event queued for publishing, with who awaits its outcome.
pub type Queued = (Event, Option<oneshot::Sender<Result<(), String>>>);

/// How many events may wait for JetStream by default (about 100 MB of typical events).
pub const DEFAULT_MAX_PENDING: usize = 100_000;

/// The queue into the publishing task.
#[derive(Debug, Clone)]
pub struct Publisher {
    tx: mpsc::Sender<Queued>,
    stats: Arc<PublishStats>,
}

impl Publisher {
    /// A publisher holding up to [`DEFAULT_MAX_PENDING`] events, and the receiving end
    /// its task drains.
    pub fn new() -> (Publisher, mpsc::Receiver<Queued>) {
        Self::with_capacity(DEFAULT_MAX_PENDING)
    }

    /// A publisher holding up to `max_pending` events (at least one).
    pub fn with_capacity(max_pending: usize) -> (Publisher, mpsc::Receiver<Queued>) {
        let (tx, rx) = mpsc::channel(max_pending.max(1));
        let stats = Arc::default();
        (Publisher { tx, stats }, rx)
    }

    /// Queues one event.
    pub fn publish(&self, event: &Event) {
        self.queue(event, None);
    }

    /// Queues one event; the receiver resolves `Ok` once JetStream acknowledged it (stored
    /// or a duplicate of a stored one), `Err` once every attempt failed.
    pub fn publish_acked(&self, event: &Event) -> oneshot::Receiver<Result<(), String>> {
        let (tx, rx) = oneshot::channel();
        self.queue(event, Some(tx));
        rx
    }

    fn queue(&self, event: &Event, ack: Option<oneshot::Sender<Result<(), String>>>) {
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        let (why, ack) = match self.tx.try_send((event.clone(), ack)) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full((_, ack))) => {
                self.stats.overflow.fetch_add(1, Ordering::Relaxed);
                ("the publish queue is full (is NATS reachable?)", ack)
            }
            Err(mpsc::error::TrySendError::Closed((_, ack))) => {
                ("the cluster publisher has stopped", ack)
            }
        };
        self.stats.lost.fetch_add(1, Ordering::Relaxed);
        match ack {
            // A webhook: answered 503 at once, so Zoom retries it later.
            Some(ack) => {
                tracing::warn!(event = %event.name, id = %event.id, "event refused: {why}");
                let _ = ack.send(Err(format!("not queued for JetStream: {why}")));
            }
            None => {
                tracing::error!(event = %event.name, id = %event.id, "event LOST: {why}")
            }
        }
    }

    /// A tap for the input path that queues every accepted event.
    pub fn tap(&self) -> EventTap {
        let publisher = self.clone();
        Arc::new(move |event: &Event| publisher.publish(event))
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<PublishStats> {
        &self.stats
    }
}

/// The publishing task: publishes queued events, one lane per partition (in order within
/// a lane, lanes concurrently), until `stop` turns true or every [`Publisher`] is gone;
/// then publishes what is queued and returns.
pub async fn run(
    js: jetstream::Context,
    mut rx: mpsc::Receiver<Queued>,
    stats: Arc<PublishStats>,
    settings: PublishSettings,
    mut stop: watch::Receiver<bool>,
) {
    let settings = Arc::new(settings);
    // A partition has an entry while its lane has an event in flight; the entry holds
    // the lane's waiting events.
    let mut lanes: HashMap<u32, VecDeque<Queued>> = HashMap::new();
    let mut in_flight = FuturesUnordered::new();
    let lane = |queued: Queued, partition: u32| {
        publish_in_lane(
            js.clone(),
            queued,
            partition,
            stats.clone(),
            settings.clone(),
        )
    };
    let mut taking = true;
    loop {
        tokio::select! {
            biased;
            Some(partition) = in_flight.next(), if !in_flight.is_empty() => {
                match lanes.get_mut(&partition).and_then(VecDeque::pop_front) {
                    Some(next) => in_flight.push(lane(next, partition)),
                    None => {
                        lanes.remove(&partition);
                    }
                }
            }
            queued = rx.recv(), if taking => match queued {
                Some(queued) => {
                    enqueue(&mut lanes, &mut in_flight, queued, settings.partitions, &lane)
                }
                None => taking = false,
            },
            _ = stop.wait_for(|s| *s), if taking => {
                // Stop taking new events; what is queued is still published.
                taking = false;
                while let Ok(queued) = rx.try_recv() {
                    enqueue(&mut lanes, &mut in_flight, queued, settings.partitions, &lane);
                }
            }
            else => {}
        }
        if !taking && in_flight.is_empty() {
            return;
        }
    }
}

/// Puts `queued` in its partition's lane: published at once when the lane is idle,
/// after the lane's earlier events otherwise.
fn enqueue<F>(
    lanes: &mut HashMap<u32, VecDeque<Queued>>,
    in_flight: &mut FuturesUnordered<F>,
    queued: Queued,
    partitions: u32,
    start: &impl Fn(Queued, u32) -> F,
) {
    let partition = super::partition::of_event_payload(&queued.0.payload, partitions);
    match lanes.get_mut(&partition) {
        Some(waiting) => waiting.push_back(queued),
        None => {
            lanes.insert(partition, VecDeque::new());
            in_flight.push(start(queued, partition));
        }
    }
}

/// Publishes one event of `partition`'s lane (with its retries), tells whoever waits,
/// and returns the partition, so the lane's next event can go.
async fn publish_in_lane(
    js: jetstream::Context,
    queued: Queued,
    partition: u32,
    stats: Arc<PublishStats>,
    settings: Arc<PublishSettings>,
) -> u32 {
    let (event, ack) = queued;
    let outcome = publish_one(&js, &event, partition, &stats, &settings).await;
    if let Some(ack) = ack {
        // Whoever waited may have given up (answered 5xx): nothing to tell then.
        let _ = ack.send(outcome);
    }
    partition
}

/// How events are published.
#[derive(Debug, Clone)]
pub struct PublishSettings {
    /// This node's name (in each message body).
    pub node: String,
    /// Number of partitions.
    pub partitions: u32,
    /// Attempts per event.
    pub attempts: u32,
    /// First retry delay (doubling up to 5 s).
    pub retry_min: Duration,
    /// The stream's duplicate window (when the stream must be made again).
    pub duplicate_window: Duration,
    /// The stream's replicas (when the stream must be made again).
    pub replicas: usize,
}

fn source_name(source: EventSource) -> &'static str {
    match source {
        EventSource::Websocket => "websocket",
        EventSource::Webhook => "webhook",
        EventSource::Replay => "replay",
        EventSource::Simulator => "simulator",
    }
}

/// The message body of an event.
pub fn body(event: &Event, node: &str) -> bytes::Bytes {
    let payload: serde_json::Value = serde_json::from_str(&event.payload)
        .unwrap_or_else(|_| serde_json::Value::String(event.payload.clone()));
    let body = serde_json::json!({
        "id": event.id,
        "name": event.name,
        "event_ts": event.timestamp,
        "source": source_name(event.source),
        "node": node,
        "payload": payload,
    });
    bytes::Bytes::from(body.to_string())
}

async fn publish_one(
    js: &jetstream::Context,
    event: &Event,
    partition: u32,
    stats: &PublishStats,
    settings: &PublishSettings,
) -> Result<(), String> {
    let subject = super::partition::subject(partition);
    let body = body(event, &settings.node);
    let attempt = || async {
        let mut message = PublishMessage::build().payload(body.clone());
        if !event.id.is_empty() {
            message = message.message_id(&event.id);
        }
        let published = async {
            let ack = js.send_publish(subject.clone(), message).await?;
            anyhow::Ok(ack.await?)
        };
        let result = published.await;
        if result.is_err() {
            // A stream that is gone (deleted, or a server restarted without it) is made
            // again before the retry; harmless when the fault was elsewhere.
            if let Err(e) = ensure_stream(js, settings.duplicate_window, settings.replicas).await {
                tracing::debug!("re-creating the event stream failed: {e:#}");
            }
        }
        result
    };
    let backoff = ExponentialBuilder::default()
        .with_min_delay(settings.retry_min)
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(settings.attempts.saturating_sub(1) as usize);
    let result = attempt
        .retry(backoff)
        .notify(|e, delay| {
            stats.retries.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                event = %event.name,
                id = %event.id,
                "publishing to JetStream failed, retrying in {} ms: {e:#}",
                delay.as_millis()
            );
        })
        .await;
    match result {
        Ok(ack) if ack.duplicate => {
            stats.duplicates.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(event = %event.name, id = %event.id, "already in the stream");
            Ok(())
        }
        Ok(ack) => {
            stats.published.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(event = %event.name, id = %event.id, seq = ack.sequence, %subject, "published");
            Ok(())
        }
        Err(e) => {
            stats.lost.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                event = %event.name,
                id = %event.id,
                attempts = settings.attempts,
                "event LOST: not published to JetStream: {e:#}"
            );
            Err(format!("not published to JetStream: {e:#}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u32, source: EventSource) -> Event {
        Event {
            id: format!("id-{n}"),
            name: "meeting.started".into(),
            timestamp: u64::from(n),
            payload: "{}".into(),
            source,
        }
    }

    #[test]
    fn a_full_queue_refuses_webhooks_at_once_and_counts_dropped_websocket_events() {
        let (publisher, mut rx) = Publisher::with_capacity(2);
        publisher.publish(&event(1, EventSource::Websocket));
        let mut first_ack = publisher.publish_acked(&event(2, EventSource::Webhook));
        // Full: a WebSocket event is dropped (counted), a webhook is refused at once.
        publisher.publish(&event(3, EventSource::Websocket));
        let mut refused = publisher.publish_acked(&event(4, EventSource::Webhook));
        let answer = refused.try_recv().expect("answered without waiting");
        assert!(answer.unwrap_err().contains("queue is full"));
        // What was queued is still there, in order, and still awaited.
        assert!(matches!(
            first_ack.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        ));
        assert_eq!(rx.try_recv().unwrap().0.id, "id-1");
        assert_eq!(rx.try_recv().unwrap().0.id, "id-2");
        assert!(rx.try_recv().is_err());
        let stats = publisher.stats();
        assert_eq!(stats.queued.load(Ordering::Relaxed), 4);
        assert_eq!(stats.overflow.load(Ordering::Relaxed), 2);
        assert_eq!(stats.lost.load(Ordering::Relaxed), 2);
        assert_eq!(stats.pending(), 2);
    }
}
