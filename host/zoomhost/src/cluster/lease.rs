//! Leader election through a JetStream key-value lease.
//!
//! The leases live in one bucket ([`super::LEASE_BUCKET`]) whose `max_age` is the lease
//! TTL: every write of a key expires TTL after the server stored it, unless a newer write
//! (a renewal) replaces it. A node **acquires** with `create` (compare-and-set: it fails
//! while a live entry exists) and **renews** with `update` at the revision it last wrote,
//! every third of the TTL; a renewal that finds another revision, errors or does not
//! complete in time means the lease is lost. A standby retries `create` every third of
//! the TTL, so it takes over at most TTL + TTL/3 (plus the server's expiry lag) after the
//! holder's last renewal: under 7 s with the 5 s default, within the 10 s Zoom allows.
//!
//! **Safety argument (never two holders acting at once).** Let `s` be the local instant
//! the holder *sent* its last successful write (create or renewal). The server stored it
//! after `s`, so no other node can `create` the key before `s + TTL` (clock rates of the
//! two machines assumed equal to within a few percent; their offsets do not matter: each
//! measures only its own intervals). The holder treats the lease as its own only until
//! the deadline `s + 2·TTL/3`: the next renewal starts at `s + TTL/3` and must be
//! acknowledged by that deadline, else the holder stops what the lease guards at once,
//! giving it the last third of the TTL (graceful close for TTL/6, then abort) to be gone
//! before anyone else can acquire. A late task (a stalled runtime) is caught the same
//! way: the deadline is absolute, not counted from when the renewal started. A renewal
//! that timed out but was applied by the server keeps the key alive one TTL longer; the
//! node then competes as a standby like everyone else, so nothing acts under it.
//!
//! On a graceful stop the holder stops what it guards first, then deletes the key at its
//! revision, so a standby takes over within TTL/3.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, kv};
use tokio::sync::watch;

use super::pause;
use tokio::time::Instant;

/// What a lease guards: started when the lease is acquired, stopped when it is lost or
/// released.
pub trait Holder: Send {
    /// Starts it (the lease was just acquired). Must not block.
    fn start(&mut self);
    /// Stops it; returns once it has stopped. Must finish within `within` (abort past
    /// a graceful attempt).
    fn stop(&mut self, within: Duration) -> impl Future<Output = ()> + Send;
}

/// One lease to contend for.
#[derive(Debug, Clone)]
pub struct LeaseSpec {
    /// The key in the bucket, e.g. `ingress.SUBSCRIPTION`.
    pub key: String,
    /// This node's name, written as the value (who holds it).
    pub node: String,
    /// The bucket's TTL.
    pub ttl: Duration,
    /// The bucket's replicas (`[cluster] replicas`).
    pub replicas: usize,
}

/// Counters of one node's lease.
#[derive(Debug, Default)]
pub struct LeaseStats {
    /// Times the lease was acquired.
    pub acquired: AtomicU64,
    /// Successful renewals.
    pub renewed: AtomicU64,
    /// Times it was lost (a renewal failed or came too late).
    pub lost: AtomicU64,
    /// Graceful releases.
    pub released: AtomicU64,
}

impl LeaseStats {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Opens (or creates) the lease bucket with `ttl` as its `max_age`, kept in `replicas`
/// copies. Every node of a cluster must use the same TTL and replicas; the last node to
/// start sets them.
pub async fn open_bucket(
    js: &jetstream::Context,
    ttl: Duration,
    replicas: usize,
) -> anyhow::Result<kv::Store> {
    js.create_or_update_key_value(kv::Config {
        bucket: super::LEASE_BUCKET.to_string(),
        description: "zoomhost leases (ingress leader)".to_string(),
        history: 1,
        max_age: ttl,
        storage: jetstream::stream::StorageType::Memory,
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .with_context(|| format!("opening the key-value bucket {}", super::LEASE_BUCKET))
}

/// Contends for `spec` until `stop` turns true: `holding` is true exactly while this
/// node holds the lease and `holder` runs. On stop, a held lease is released (after the
/// holder stopped).
pub async fn run<H: Holder>(
    js: jetstream::Context,
    spec: LeaseSpec,
    mut holder: H,
    holding: watch::Sender<bool>,
    stats: Arc<LeaseStats>,
    mut stop: watch::Receiver<bool>,
) {
    let third = spec.ttl / 3;
    let value = bytes::Bytes::from(spec.node.clone());
    // The bucket is (re-)opened after any failure other than "held by another": a NATS
    // server restarted without its memory-stored buckets has none.
    let mut bucket: Option<kv::Store> = None;
    let open = || open_bucket(&js, spec.ttl, spec.replicas);
    let mut failing = false;
    loop {
        if *stop.borrow() {
            return;
        }
        let store = match bucket.clone() {
            Some(store) => store,
            None => match tokio::time::timeout(third, open()).await {
                Ok(Ok(store)) => {
                    bucket = Some(store.clone());
                    store
                }
                Ok(Err(e)) => {
                    note_failure(&mut failing, &spec, &format!("{e:#}"));
                    if pause(third, &mut stop).await {
                        return;
                    }
                    continue;
                }
                Err(_) => {
                    note_failure(&mut failing, &spec, "opening the bucket timed out");
                    if pause(third, &mut stop).await {
                        return;
                    }
                    continue;
                }
            },
        };
        let sent = Instant::now();
        match tokio::time::timeout(third, store.create(&spec.key, value.clone())).await {
            Ok(Ok(revision)) => {
                failing = false;
                LeaseStats::bump(&stats.acquired);
                tracing::info!(lease = %spec.key, node = %spec.node, revision, "lease acquired");
                holding.send_replace(true);
                holder.start();
                let outcome = hold(&store, &spec, &value, revision, sent, &stats, &mut stop).await;
                if outcome.is_none() {
                    LeaseStats::bump(&stats.lost);
                }
                // Lost: the last sixth of the TTL is all that is left (see the module
                // docs). Released: stopping began within TTL/3 of the last renewal, so
                // half the TTL still ends before the lease could expire.
                let within = if outcome.is_some() {
                    spec.ttl / 2
                } else {
                    spec.ttl / 6
                };
                holder.stop(within).await;
                holding.send_replace(false);
                if let Some(revision) = outcome {
                    match store
                        .delete_expect_revision(&spec.key, Some(revision))
                        .await
                    {
                        Ok(()) => {
                            LeaseStats::bump(&stats.released);
                            tracing::info!(lease = %spec.key, "lease released");
                        }
                        Err(e) => tracing::warn!(
                            lease = %spec.key,
                            "releasing the lease failed (it expires in {} ms): {e}",
                            spec.ttl.as_millis()
                        ),
                    }
                    return;
                }
            }
            Ok(Err(e)) if e.kind() == kv::CreateErrorKind::AlreadyExists => failing = false,
            Ok(Err(e)) => {
                bucket = None;
                note_failure(&mut failing, &spec, &format!("acquiring failed: {e}"));
            }
            Err(_) => {
                bucket = None;
                note_failure(&mut failing, &spec, "acquiring timed out");
            }
        }
        if pause(third, &mut stop).await {
            return;
        }
    }
}

/// Logs a failure to reach the lease: a warning for the first of a run, then debug.
fn note_failure(failing: &mut bool, spec: &LeaseSpec, what: &str) {
    if *failing {
        tracing::debug!(lease = %spec.key, "lease unreachable: {what}");
    } else {
        tracing::warn!(lease = %spec.key, "lease unreachable (retrying every third of the TTL): {what}");
    }
    *failing = true;
}

/// Renews the lease written at `revision` (sent at `sent`) every TTL/3. Returns the
/// last revision when `stop` turned true, `None` when the lease was lost.
async fn hold(
    store: &kv::Store,
    spec: &LeaseSpec,
    value: &bytes::Bytes,
    mut revision: u64,
    mut sent: Instant,
    stats: &LeaseStats,
    stop: &mut watch::Receiver<bool>,
) -> Option<u64> {
    let third = spec.ttl / 3;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(sent + third) => {}
            _ = stop.wait_for(|s| *s) => return Some(revision),
        }
        // The lease is ours until `sent + 2·TTL/3` at the latest (see the module docs).
        let deadline = sent + 2 * third;
        let attempt = Instant::now();
        match tokio::time::timeout_at(deadline, store.update(&spec.key, value.clone(), revision))
            .await
        {
            Ok(Ok(next)) => {
                revision = next;
                sent = attempt;
                LeaseStats::bump(&stats.renewed);
            }
            Ok(Err(e)) => {
                tracing::warn!(lease = %spec.key, "lease lost: renewal refused: {e}");
                return None;
            }
            Err(_) => {
                tracing::warn!(
                    lease = %spec.key,
                    "lease lost: renewal not acknowledged within {} ms of the last one",
                    (2 * third).as_millis()
                );
                return None;
            }
        }
    }
}
