//! The worker half: a `worker` node owns some of the event partitions and delivers their
//! events to its plugins.
//!
//! **Ownership.** Each partition has a lease key `partition.<n>` in the lease bucket
//! ([`super::LEASE_BUCKET`], TTL = its `max_age`), and each live worker a heartbeat key
//! `worker.<node>` there, rewritten every third of the TTL. Every third of the TTL a
//! worker counts the live workers `W` (heartbeat keys present), renews the leases it
//! holds (`update` at the held revision; a refused or failed renewal loses the
//! partition), releases the ones beyond its share `ceil(partitions / W)` (a new worker
//! joined), and `create`s free partition keys up to that share (a worker left or died:
//! its keys expire one TTL after its last renewal). So a dead worker's partitions move
//! within TTL + TTL/3 of its last renewal.
//!
//! **Consumption.** Each owned partition is read through a durable pull consumer of
//! [`super::EVENT_STREAM`] named `worker-p<n>`, filtered to `zoomhost.events.<n>`, with
//! explicit acknowledgement and at most one unacknowledged message. The consumer is
//! shared by whoever owns the partition, so even while ownership moves (or two nodes
//! briefly both believe they own it) one message of a partition is in flight at a time,
//! in stream order: per-meeting order holds across owners. Each message goes into the
//! runtime with [`zoomhost_runtime::Router::dispatch_event_tracked`] and is acknowledged
//! when its completion resolves (every subscribed plugin's call returned, failed, or the
//! mailbox dropped it), with "in progress" signals every third of the ack wait while a
//! call runs long.
//!
//! **Failures.** A message delivered to a worker that dies is redelivered by JetStream
//! after the ack wait (the lease TTL) to whoever pulls next: delivery is at-least-once
//! across a crash, and the event's id (the content-derived id it was published under)
//! lets a plugin recognise the repeat. A message whose body is not an event is
//! terminated (logged, never redelivered).
//!
//! **RTMS streams** ([`super::rtms_state`]): each delivered event is shown to the node's
//! RTMS client first, so streams open on the worker owning the meeting's partition. On
//! acquiring partitions the worker resumes their saved streams (retried next round if
//! the bucket cannot be read); before releasing one (rebalancing, a lost lease, a
//! graceful stop) it hands that partition's streams over.
//!
//! **Graceful stop** (the host's shutdown): the worker stops taking partitions, lets each
//! consumer finish and acknowledge the event it holds, hands its RTMS streams over,
//! deletes its leases and its heartbeat, so the remaining workers take the partitions
//! on their next round.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer, kv, AckKind};
use futures_util::StreamExt as _;
use serde::Deserialize;
use tokio::sync::watch;

use super::pause;
use super::rtms_state::RtmsOwnership;
use tokio::task::JoinHandle;
use zoomhost_runtime::Router;
use zoomhost_types::{Event, EventSource};

/// A worker's settings.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// This node's name.
    pub node: String,
    /// The partition count (the same on every node).
    pub partitions: u32,
    /// The lease TTL; also the consumers' ack wait.
    pub ttl: Duration,
    /// The lease bucket's replicas (`[cluster] replicas`).
    pub replicas: usize,
}

/// A worker's counters.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Events delivered and acknowledged.
    pub acked: AtomicU64,
    /// Of those, deliveries JetStream marked as repeats (after a crash or a late ack).
    pub redelivered: AtomicU64,
    /// Messages that were not events (terminated).
    pub malformed: AtomicU64,
    /// Partition leases acquired.
    pub acquired: AtomicU64,
    /// Partition leases released (rebalancing or stopping).
    pub released: AtomicU64,
    /// Partition leases lost (a renewal failed).
    pub lost: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The lease key of partition `n`.
pub fn partition_key(n: u32) -> String {
    format!("partition.{n}")
}

/// The heartbeat key of worker `node` (characters a key cannot hold become `_`).
pub fn heartbeat_key(node: &str) -> String {
    format!("worker.{}", super::key_safe(node))
}

/// The durable consumer of partition `n`.
pub fn consumer_name(n: u32) -> String {
    format!("worker-p{n}")
}

/// A partition this worker owns: its lease revision and its consumer task.
struct Owned {
    revision: u64,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Owned {
    /// Stops the consumer: it finishes and acknowledges the event it holds, within
    /// `within` (then it is aborted).
    async fn stop(mut self, within: Duration) {
        let _ = self.stop.send(true);
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(within, &mut task).await.is_err() {
                task.abort();
            }
        }
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Runs the worker until `stop` turns true, publishing the owned partitions to `owned`.
/// Dropping (aborting) this future aborts every consumer: a crash as far as the cluster
/// can tell.
pub async fn run(
    js: jetstream::Context,
    router: Arc<Router>,
    rtms: Option<Arc<RtmsOwnership>>,
    settings: WorkerSettings,
    stats: Arc<WorkerStats>,
    owned_out: watch::Sender<BTreeSet<u32>>,
    mut stop: watch::Receiver<bool>,
) {
    let third = settings.ttl / 3;
    let value = bytes::Bytes::from(settings.node.clone());
    let heartbeat = heartbeat_key(&settings.node);
    let mut owned: BTreeMap<u32, Owned> = BTreeMap::new();
    let mut store: Option<kv::Store> = None;
    // Acquired partitions whose saved RTMS streams are not resumed yet.
    let mut to_resume: BTreeSet<u32> = BTreeSet::new();
    // Workers start their search for free partitions at different places.
    let offset = super::partition::of_meeting(Some(&settings.node), settings.partitions);
    loop {
        if store.is_none() {
            match tokio::time::timeout(
                third,
                super::lease::open_bucket(&js, settings.ttl, settings.replicas),
            )
            .await
            {
                Ok(Ok(s)) => store = Some(s),
                Ok(Err(e)) => tracing::warn!("worker: {e:#}"),
                Err(_) => tracing::warn!("worker: opening the lease bucket timed out"),
            }
        }
        if let Some(kv) = store.clone() {
            let ctx = RoundCtx {
                js: &js,
                kv: &kv,
                router: &router,
                rtms: rtms.as_ref(),
                settings: &settings,
                stats: &stats,
                value: &value,
                heartbeat: &heartbeat,
                offset,
            };
            if let Err(e) = round(&ctx, &mut owned, &mut to_resume).await {
                tracing::warn!(node = %settings.node, "worker round failed: {e:#}");
                store = None;
            }
            owned_out.send_replace(owned.keys().copied().collect());
        }
        // Resumes that failed in an earlier round.
        to_resume.retain(|n| owned.contains_key(n));
        if let (Some(rtms), false) = (&rtms, to_resume.is_empty()) {
            match tokio::time::timeout(settings.ttl / 3, rtms.resume(&to_resume)).await {
                Ok(Ok(_)) => to_resume.clear(),
                Err(_) => {
                    tracing::warn!(node = %settings.node, "resuming RTMS streams timed out (retried next round)")
                }
                Ok(Err(e)) => {
                    tracing::warn!(node = %settings.node, "resuming RTMS streams failed (retried next round): {e:#}")
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(third) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    // Graceful stop: finish and acknowledge, then hand the partitions over.
    let stopping: Vec<_> = std::mem::take(&mut owned).into_iter().collect();
    let revisions: Vec<(u32, u64)> = stopping.iter().map(|(n, o)| (*n, o.revision)).collect();
    futures_util::future::join_all(stopping.into_iter().map(|(_, o)| o.stop(settings.ttl / 2)))
        .await;
    if let Some(rtms) = &rtms {
        let partitions: BTreeSet<u32> = revisions.iter().map(|(n, _)| *n).collect();
        rtms.hand_over(&partitions, settings.ttl / 2).await;
    }
    owned_out.send_replace(BTreeSet::new());
    if let Some(kv) = store {
        for (n, revision) in revisions {
            match kv
                .delete_expect_revision(partition_key(n), Some(revision))
                .await
            {
                Ok(()) => bump(&stats.released),
                Err(e) => tracing::warn!(partition = n, "releasing the partition failed: {e}"),
            }
        }
        let _ = kv.delete(&heartbeat).await;
    }
    tracing::info!(node = %settings.node, "worker stopped; partitions handed over");
}

/// What a round works with.
struct RoundCtx<'a> {
    js: &'a jetstream::Context,
    kv: &'a kv::Store,
    router: &'a Arc<Router>,
    rtms: Option<&'a Arc<RtmsOwnership>>,
    settings: &'a WorkerSettings,
    stats: &'a Arc<WorkerStats>,
    value: &'a bytes::Bytes,
    heartbeat: &'a str,
    offset: u32,
}

/// One round: heartbeat, count workers, renew, release the excess, take free ones
/// (noting them in `to_resume`).
async fn round(
    ctx: &RoundCtx<'_>,
    owned: &mut BTreeMap<u32, Owned>,
    to_resume: &mut BTreeSet<u32>,
) -> anyhow::Result<()> {
    let RoundCtx {
        js,
        kv,
        router,
        rtms,
        settings,
        stats,
        value,
        heartbeat,
        offset,
    } = *ctx;
    let third = settings.ttl / 3;
    tokio::time::timeout(third, kv.put(heartbeat, value.clone()))
        .await
        .context("writing the heartbeat timed out")?
        .context("writing the heartbeat")?;
    let mut keys: HashSet<String> = HashSet::new();
    let mut listing = tokio::time::timeout(third, kv.keys())
        .await
        .context("listing the lease bucket timed out")?
        .context("listing the lease bucket")?;
    while let Ok(Some(key)) = tokio::time::timeout(third, listing.next()).await {
        keys.insert(key.context("listing the lease bucket")?);
    }
    let workers = keys
        .iter()
        .filter(|k| k.starts_with("worker."))
        .count()
        .max(1) as u32;
    let share = settings.partitions.div_ceil(workers) as usize;

    // Renew what is held; a refused renewal loses the partition.
    let held: Vec<u32> = owned.keys().copied().collect();
    let mut lost = Vec::new();
    for n in held {
        let Some(o) = owned.get_mut(&n) else { continue };
        match tokio::time::timeout(
            third,
            kv.update(partition_key(n), value.clone(), o.revision),
        )
        .await
        {
            Ok(Ok(revision)) => o.revision = revision,
            outcome => {
                let why = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".to_string(),
                };
                tracing::warn!(partition = n, "partition lease lost: renewal failed: {why}");
                bump(&stats.lost);
                lost.extend(owned.remove(&n).map(|o| (n, o)));
            }
        }
    }
    let lost_partitions: BTreeSet<u32> = lost.iter().map(|(n, _)| *n).collect();
    futures_util::future::join_all(lost.into_iter().map(|(_, o)| o.stop(settings.ttl / 6))).await;
    if let Some(rtms) = rtms {
        // Another node may own them already: its streams must not meet ours.
        rtms.hand_over(&lost_partitions, settings.ttl / 6).await;
    }
    // Release beyond the share (another worker joined), all at once.
    let mut excess = Vec::new();
    while owned.len() > share {
        let Some(last) = owned.pop_last() else { break };
        excess.push(last);
    }
    let revisions: Vec<(u32, u64)> = excess.iter().map(|(n, o)| (*n, o.revision)).collect();
    futures_util::future::join_all(excess.into_iter().map(|(_, o)| o.stop(settings.ttl / 2))).await;
    if let Some(rtms) = rtms {
        let partitions: BTreeSet<u32> = revisions.iter().map(|(n, _)| *n).collect();
        rtms.hand_over(&partitions, settings.ttl / 2).await;
    }
    for (n, revision) in revisions {
        if kv
            .delete_expect_revision(partition_key(n), Some(revision))
            .await
            .is_ok()
        {
            bump(&stats.released);
            tracing::info!(partition = n, node = %settings.node, "partition released for rebalancing");
        }
    }
    // Take free partitions up to the share.
    let mut acquired: Vec<(u32, watch::Receiver<bool>)> = Vec::new();
    let mut failure: Option<anyhow::Error> = None;
    for i in 0..settings.partitions {
        if owned.len() >= share {
            break;
        }
        let n = (i + offset) % settings.partitions;
        if owned.contains_key(&n) || keys.contains(&partition_key(n)) {
            continue;
        }
        match tokio::time::timeout(third, kv.create(partition_key(n), value.clone())).await {
            Ok(Ok(revision)) => {
                bump(&stats.acquired);
                let (stop, stopped) = watch::channel(false);
                to_resume.insert(n);
                acquired.push((n, stopped));
                tracing::info!(partition = n, node = %settings.node, "partition acquired");
                owned.insert(
                    n,
                    Owned {
                        revision,
                        stop,
                        task: None,
                    },
                );
            }
            Ok(Err(e)) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Ok(Err(e)) => {
                failure = Some(anyhow::Error::new(e).context("acquiring a partition"));
                break;
            }
            Err(_) => {
                failure = Some(anyhow::anyhow!("acquiring a partition timed out"));
                break;
            }
        }
    }
    // Saved RTMS streams resume before the partitions' events flow, so a redelivered
    // `*.rtms_started` finds its stream running with its progress.
    if let (Some(rtms), false) = (rtms, acquired.is_empty()) {
        match tokio::time::timeout(third, rtms.resume(to_resume)).await {
            Ok(Ok(_)) => to_resume.clear(),
            Err(_) => {
                tracing::warn!(node = %settings.node, "resuming RTMS streams timed out (retried next round)")
            }
            Ok(Err(e)) => {
                tracing::warn!(node = %settings.node, "resuming RTMS streams failed (retried next round): {e:#}")
            }
        }
    }
    for (n, stopped) in acquired {
        if let Some(o) = owned.get_mut(&n) {
            o.task = Some(tokio::spawn(consume(
                js.clone(),
                router.clone(),
                rtms.cloned(),
                n,
                settings.ttl,
                stats.clone(),
                stopped,
            )));
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The message body the ingress publishes (see [`super::publish::body`]).
#[derive(Deserialize)]
struct Body {
    id: String,
    name: String,
    #[serde(default)]
    event_ts: u64,
    #[serde(default)]
    source: String,
    #[serde(default)]
    payload: serde_json::Value,
}

/// The event a message carries.
pub fn event_of_body(body: &[u8]) -> anyhow::Result<Event> {
    let body: Body = serde_json::from_slice(body).context("not an event message")?;
    let source = match body.source.as_str() {
        "websocket" => EventSource::Websocket,
        "webhook" => EventSource::Webhook,
        "simulator" => EventSource::Simulator,
        _ => EventSource::Replay,
    };
    let payload = match body.payload {
        serde_json::Value::String(text) => text,
        other => other.to_string(),
    };
    Ok(Event {
        id: body.id,
        name: body.name,
        timestamp: body.event_ts,
        payload,
        source,
    })
}

/// Consumes partition `n` until `stop` turns true (finishing the event in hand).
async fn consume(
    js: jetstream::Context,
    router: Arc<Router>,
    rtms: Option<Arc<RtmsOwnership>>,
    n: u32,
    ack_wait: Duration,
    stats: Arc<WorkerStats>,
    mut stop: watch::Receiver<bool>,
) {
    let poll = (ack_wait / 3).min(Duration::from_secs(1));
    let mut reader: Option<consumer::PullConsumer> = None;
    while !*stop.borrow() {
        let consumer = match reader.clone() {
            Some(c) => c,
            None => match open_consumer(&js, n, ack_wait).await {
                Ok(c) => {
                    reader = Some(c.clone());
                    c
                }
                Err(e) => {
                    tracing::warn!(partition = n, "worker: {e:#}");
                    if pause(poll, &mut stop).await {
                        return;
                    }
                    continue;
                }
            },
        };
        let batch = tokio::select! {
            batch = consumer.fetch().max_messages(1).expires(poll).messages() => batch,
            _ = stop.wait_for(|s| *s) => return,
        };
        let mut batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(partition = n, "worker: fetching failed: {e}");
                reader = None;
                if pause(poll, &mut stop).await {
                    return;
                }
                continue;
            }
        };
        loop {
            // Waiting for a message gives way to a stop; one in hand is finished first.
            let message = tokio::select! {
                message = batch.next() => message,
                _ = stop.wait_for(|s| *s) => return,
            };
            let Some(message) = message else { break };
            match message {
                Ok(message) => handle(&router, rtms.as_deref(), n, message, ack_wait, &stats).await,
                Err(e) => {
                    tracing::debug!(partition = n, "worker: fetch ended: {e}");
                    break;
                }
            }
        }
    }
}

async fn open_consumer(
    js: &jetstream::Context,
    n: u32,
    ack_wait: Duration,
) -> anyhow::Result<consumer::PullConsumer> {
    let stream = js
        .get_stream(super::EVENT_STREAM)
        .await
        .with_context(|| format!("opening the stream {}", super::EVENT_STREAM))?;
    let name = consumer_name(n);
    stream
        .get_or_create_consumer(
            &name,
            consumer::pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: super::partition::subject(n),
                ack_policy: consumer::AckPolicy::Explicit,
                max_ack_pending: 1,
                ack_wait,
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("opening the consumer {name}"))
}

/// Delivers one message and acknowledges it once every plugin is done with it.
async fn handle(
    router: &Router,
    rtms: Option<&RtmsOwnership>,
    n: u32,
    message: jetstream::Message,
    ack_wait: Duration,
    stats: &WorkerStats,
) {
    let event = match event_of_body(&message.payload) {
        Ok(event) => event,
        Err(e) => {
            bump(&stats.malformed);
            tracing::warn!(partition = n, "worker: message terminated: {e:#}");
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    if message.info().is_ok_and(|i| i.delivered > 1) {
        bump(&stats.redelivered);
    }
    // The RTMS client first: `*.rtms_started` opens the stream here, on the owner.
    if let Some(rtms) = rtms {
        rtms.on_event(&event);
    }
    let done = router.dispatch_event_tracked(event).wait();
    tokio::pin!(done);
    loop {
        tokio::select! {
            _ = &mut done => break,
            _ = tokio::time::sleep(ack_wait / 3) => {
                let _ = message.ack_with(AckKind::Progress).await;
            }
        }
    }
    match tokio::time::timeout(ack_wait / 3, message.double_ack()).await {
        Ok(Ok(())) => bump(&stats.acked),
        Ok(Err(e)) => tracing::warn!(partition = n, "worker: acknowledging failed: {e}"),
        Err(_) => tracing::warn!(partition = n, "worker: acknowledging timed out"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_body_reads_back_as_the_event() {
        let event = Event {
            id: "abc".into(),
            name: "meeting.started".into(),
            timestamp: 42,
            payload: r#"{"object":{"uuid":"m1"}}"#.into(),
            source: EventSource::Webhook,
        };
        let back = event_of_body(&super::super::publish::body(&event, "n1")).unwrap();
        assert_eq!(
            (back.id, back.name, back.timestamp, back.source),
            (
                "abc".to_string(),
                "meeting.started".to_string(),
                42,
                EventSource::Webhook
            )
        );
        let payload: serde_json::Value = serde_json::from_str(&back.payload).unwrap();
        assert_eq!(payload["object"]["uuid"], "m1");
        assert!(event_of_body(b"nope").is_err());
        assert_eq!(heartbeat_key("a.b c"), "worker.a_b_c");
    }
}
