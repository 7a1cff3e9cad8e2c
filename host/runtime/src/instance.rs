//! One live instance of a plugin: its store, its exports, and its open media sessions.
//! Every call runs under a deadline (epoch ticks for guest code, a wall-clock backstop
//! for host waits such as outbound HTTP) and the store's memory cap. A call holds the
//! engine's epoch ticker running while it is in flight; one that ends within its first
//! poll (no host wait: the usual media call) never sets a timer for its backstop.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceAny;
use wasmtime::{Store, Trap, UpdateDeadline};

use crate::bindings::types::{Event, Metadata, StreamInfo};
use crate::bindings::WorldVersion;
use crate::declared::{self, Subscriptions};
use crate::engine::{CompiledPlugin, Runtime};
use crate::epoch::{EpochTicker, EPOCH_TICK};
use crate::guest::Guest;
use crate::identity::PluginIdentity;
use crate::limiter::BudgetExceeded;
use crate::limits::Limits;
use crate::mailbox::MediaItem;
use crate::store::StoreState;

/// Raised by the epoch callback when a call overruns its deadline.
#[derive(Debug)]
struct DeadlineExceeded;

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {}

/// Why an instance had to be killed.
#[derive(Debug, Clone, PartialEq)]
pub enum Fatal {
    /// The call ran past its deadline.
    Deadline(Duration),
    /// The instance tried to grow its linear memory past its cap.
    MemoryCap(String),
    /// The instance went over another budget of `[limits]` (handles, host-call bytes,
    /// tables, core instances, memories).
    Budget {
        /// The `[limits]` key.
        key: &'static str,
        /// What happened, in words.
        detail: String,
    },
    /// The guest trapped (panic, unreachable, ...) or a host call it made failed.
    Trap(String),
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fatal::Deadline(d) => write!(f, "deadline of {} ms exceeded", d.as_millis()),
            Fatal::MemoryCap(m) => write!(f, "memory cap hit: {m}"),
            Fatal::Budget { key, detail } => {
                write!(f, "budget exceeded: {detail} (limits.{key})")
            }
            Fatal::Trap(m) => write!(f, "trap: {m}"),
        }
    }
}

impl Fatal {
    /// Classifies what wasmtime returned, keeping the whole reason on one line.
    fn from_error(e: wasmtime::Error, deadline: Duration, limits: &Limits) -> Self {
        if e.is::<DeadlineExceeded>() {
            return Fatal::Deadline(deadline);
        }
        if let Some(budget) = e.downcast_ref::<BudgetExceeded>() {
            if budget.key == "memory_mib" {
                return Fatal::MemoryCap(budget.detail.clone());
            }
            return Fatal::Budget {
                key: budget.key,
                detail: budget.detail.clone(),
            };
        }
        if let Some(Trap::Interrupt) = e.downcast_ref::<Trap>() {
            return Fatal::Deadline(deadline);
        }
        let text = reason(&e);
        if let Some((key, detail)) = budget_named_by(&text, limits) {
            return Fatal::Budget {
                key,
                detail: format!("{detail}: {text}"),
            };
        }
        Fatal::Trap(text)
    }
}

/// The error's whole chain of causes on one line, without the wasm backtrace (the
/// backtrace is context, not a cause, and is many lines long).
pub(crate) fn reason(e: &wasmtime::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        // wasmtime attaches the backtrace as context, printed as this header and frames.
        if text.starts_with("error while executing at wasm backtrace") {
            continue;
        }
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    if parts.is_empty() {
        return "unknown error".into();
    }
    guest_text(parts.join(": "))
}

/// The `[limits]` budget that wasmtime's own message names, if any.
fn budget_named_by(text: &str, limits: &Limits) -> Option<(&'static str, String)> {
    let found = if text.contains("store handle limit exceeded")
        || text.contains("resource table has no free keys")
    {
        (
            "max_handles",
            format!("more than {} live handles", limits.max_handles),
        )
    } else if text.contains("size of fields exceeds limit") {
        (
            "http_field_bytes",
            format!(
                "a wasi:http fields object over {} bytes",
                limits.http_field_bytes
            ),
        )
    } else if text.contains("fuel allocated for hostcalls has been exhausted") {
        (
            "hostcall_bytes",
            format!(
                "more than {} bytes passed to the host in one call",
                limits.hostcall_bytes
            ),
        )
    } else if text.contains("instance count too high") {
        (
            "max_core_instances",
            format!("more than {} core instances", limits.max_core_instances),
        )
    } else if text.contains("memory count too high") {
        (
            "max_memories",
            format!("more than {} linear memories", limits.max_memories),
        )
    } else if text.contains("table count too high") {
        (
            "max_tables",
            format!("more than {} tables", limits.max_tables),
        )
    } else {
        return None;
    };
    Some(found)
}

/// The outcome of one call: the plugin may answer with an error (counted, instance kept),
/// or the instance may be lost.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// The plugin returned `Err(message)`.
    Guest(String),
    /// The instance is dead; see the reason.
    Fatal(Fatal),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Guest(m) => write!(f, "plugin returned error: {m}"),
            CallError::Fatal(x) => x.fmt(f),
        }
    }
}

impl From<Fatal> for CallError {
    fn from(f: Fatal) -> Self {
        CallError::Fatal(f)
    }
}

/// One instantiated plugin.
pub struct LiveInstance {
    store: Store<StoreState>,
    plugin: Guest,
    /// Looked up on every media item: a fast (non-SipHash) hasher.
    sessions: std::collections::HashMap<Arc<str>, ResourceAny, rustc_hash::FxBuildHasher>,
    metadata: Metadata,
    subscriptions: Subscriptions,
    event_deadline: Duration,
    media_deadline: Duration,
    limits: Limits,
    ticker: Arc<EpochTicker>,
}

/// Wall-clock allowance past a deadline before the backstop fires (the epoch check
/// normally fires first, within one tick).
fn backstop(deadline: Duration) -> Duration {
    deadline + deadline / 4 + EPOCH_TICK * 4
}

/// Runs one call with the epoch ticker running, under the wall-clock backstop. The
/// backstop's timer is set only if the call does not end within its first poll.
async fn guarded<R>(
    ticker: &EpochTicker,
    deadline: Duration,
    limits: &Limits,
    fut: impl Future<Output = wasmtime::Result<R>>,
) -> Result<R, Fatal> {
    let _in_flight = ticker.call();
    let started = tokio::time::Instant::now();
    let mut fut = std::pin::pin!(fut);
    let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
    let result = match first {
        Poll::Ready(r) => r,
        Poll::Pending => match tokio::time::timeout_at(started + backstop(deadline), fut).await {
            Ok(r) => r,
            Err(_) => return Err(Fatal::Deadline(deadline)),
        },
    };
    result.map_err(|e| Fatal::from_error(e, deadline, limits))
}

fn guest_result(r: Result<(), String>) -> Result<(), CallError> {
    r.map_err(|e| CallError::Guest(guest_text(e)))
}

/// Longest error text from a plugin that the host keeps (logs, stats, reasons).
const MAX_GUEST_TEXT: usize = 2 * 1024;

/// A plugin's error text as the host keeps it: on one line, cut past
/// [`MAX_GUEST_TEXT`] bytes with a marker, so a plugin cannot write megabytes into the
/// host's log through its errors.
fn guest_text(text: String) -> String {
    let flat = text.replace(['\n', '\r'], " ");
    if flat.len() <= MAX_GUEST_TEXT {
        return flat;
    }
    let mut cut = MAX_GUEST_TEXT;
    while !flat.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… [{} bytes cut]", &flat[..cut], flat.len() - cut)
}

impl LiveInstance {
    /// Instantiates `compiled`, reads its metadata and runs `init`, each under the event
    /// deadline, with the limits of the plugin's grant. Any failure is returned as text
    /// naming the step.
    pub async fn start(
        runtime: &Runtime,
        compiled: &CompiledPlugin,
        identity: Arc<PluginIdentity>,
    ) -> Result<Self, String> {
        Self::start_as(runtime, compiled, identity, 0).await
    }

    /// [`LiveInstance::start`] for the plugin's instance number `instance` (its log lines
    /// carry that number).
    pub async fn start_as(
        runtime: &Runtime,
        compiled: &CompiledPlugin,
        identity: Arc<PluginIdentity>,
        instance: u32,
    ) -> Result<Self, String> {
        let limits = identity.grant().limits.clone();
        if limits.memory_bytes() > runtime.max_memory_bytes() {
            return Err(format!(
                "limits.memory_mib = {} is above the {} MiB the instance pool was sized for at start; restart zoomhost to apply it",
                limits.memory_mib,
                runtime.max_memory_bytes() >> 20
            ));
        }
        let mut store = Store::new(
            runtime.engine(),
            StoreState::new(identity, &limits, runtime.control(), instance),
        );
        store.limiter(|s| &mut s.limiter);
        store.set_max_component_handles(limits.max_handles as usize);
        store.set_hostcall_fuel(usize::try_from(limits.hostcall_bytes).unwrap_or(usize::MAX));
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() >= ctx.data().deadline {
                Err(wasmtime::Error::new(DeadlineExceeded))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        let deadline = limits.event_deadline();
        let ticker = runtime.ticker();
        arm(&mut store, deadline);
        let plugin = guarded(
            &ticker,
            deadline,
            &limits,
            compiled.pre.instantiate(&mut store),
        )
        .await;
        let plugin = disarm(&mut store, plugin).map_err(|e| format!("instantiate failed: {e}"))?;
        arm(&mut store, deadline);
        let metadata = guarded(&ticker, deadline, &limits, plugin.metadata(&mut store)).await;
        let metadata =
            disarm(&mut store, metadata).map_err(|e| format!("metadata() failed: {e}"))?;
        let subscriptions =
            declared::check(&metadata, &limits).map_err(|e| format!("metadata() rejected: {e}"))?;
        arm(&mut store, deadline);
        let init = guarded(&ticker, deadline, &limits, plugin.init(&mut store)).await;
        disarm(&mut store, init)
            .map_err(|e| format!("init() failed: {e}"))?
            .map_err(|e| format!("init() returned error: {}", guest_text(e)))?;
        Ok(Self {
            store,
            plugin,
            sessions: Default::default(),
            metadata,
            subscriptions,
            event_deadline: deadline,
            media_deadline: limits.media_deadline(),
            limits,
            ticker,
        })
    }

    /// The world version the component was built for.
    pub fn world_version(&self) -> WorldVersion {
        match self.plugin {
            Guest::V0_2(_) => WorldVersion::V0_2,
            Guest::V0_1(_) => WorldVersion::V0_1,
        }
    }

    /// What the plugin declared.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Its event patterns, parsed and checked against its limits.
    pub fn subscriptions(&self) -> &Subscriptions {
        &self.subscriptions
    }

    /// Delivers one event.
    pub async fn handle_event(&mut self, event: &Event) -> Result<(), CallError> {
        let d = self.event_deadline;
        arm(&mut self.store, d);
        let r = guarded(
            &self.ticker,
            d,
            &self.limits,
            self.plugin.handle_event(&mut self.store, event),
        )
        .await;
        guest_result(disarm(&mut self.store, r)?)
    }

    /// Opens a media session for a stream.
    pub async fn open_session(
        &mut self,
        stream: &Arc<str>,
        info: &StreamInfo,
    ) -> Result<(), CallError> {
        let d = self.media_deadline;
        arm(&mut self.store, d);
        let session = guarded(
            &self.ticker,
            d,
            &self.limits,
            self.plugin.open_session(&mut self.store, info),
        )
        .await;
        let session = disarm(&mut self.store, session)?;
        if let Some(old) = self.sessions.insert(stream.clone(), session) {
            // A stream reopened without a close: end the old session first.
            arm(&mut self.store, d);
            let r = guarded(
                &self.ticker,
                d,
                &self.limits,
                old.resource_drop_async(&mut self.store),
            )
            .await;
            disarm(&mut self.store, r)?;
        }
        Ok(())
    }

    /// Ends a stream's session (the guest's destructor runs).
    pub async fn close_session(&mut self, stream: &str) -> Result<(), CallError> {
        let Some(session) = self.sessions.remove(stream) else {
            return Ok(());
        };
        let d = self.media_deadline;
        arm(&mut self.store, d);
        let r = guarded(
            &self.ticker,
            d,
            &self.limits,
            session.resource_drop_async(&mut self.store),
        )
        .await;
        disarm(&mut self.store, r)?;
        Ok(())
    }

    /// Delivers one media item (not open/close) to a stream's session. An item for a
    /// stream with no session is ignored (`Ok(false)`).
    pub async fn media(&mut self, stream: &str, item: &MediaItem) -> Result<bool, CallError> {
        let Some(session) = self.sessions.get(stream).copied() else {
            return Ok(false);
        };
        let d = self.media_deadline;
        arm(&mut self.store, d);
        let r = guarded(
            &self.ticker,
            d,
            &self.limits,
            self.plugin.media(&mut self.store, session, item),
        )
        .await;
        let r = disarm(&mut self.store, r)?;
        if matches!(item, MediaItem::Open(_) | MediaItem::Close) {
            return Ok(false);
        }
        guest_result(r).map(|()| true)
    }

    /// The plugin's state for the next version, if it keeps any.
    pub async fn snapshot(&mut self) -> Result<Option<Vec<u8>>, CallError> {
        let d = self.event_deadline;
        arm(&mut self.store, d);
        let r = guarded(
            &self.ticker,
            d,
            &self.limits,
            self.plugin.snapshot(&mut self.store),
        )
        .await;
        Ok(disarm(&mut self.store, r)?)
    }

    /// Hands the previous version's state to this one.
    pub async fn restore(&mut self, state: &[u8]) -> Result<(), CallError> {
        let d = self.event_deadline;
        arm(&mut self.store, d);
        let r = guarded(
            &self.ticker,
            d,
            &self.limits,
            self.plugin.restore(&mut self.store, state),
        )
        .await;
        guest_result(disarm(&mut self.store, r)?)
    }
}

/// Sets the deadline for the next call and opens its scope.
fn arm(store: &mut Store<StoreState>, deadline: Duration) {
    store.data_mut().begin_call(Instant::now() + deadline);
    store.set_epoch_deadline(1);
}

/// Ends the call's scope (its unfinished outbound requests are cancelled) and passes its
/// result on.
fn disarm<R>(store: &mut Store<StoreState>, result: Result<R, Fatal>) -> Result<R, Fatal> {
    store.data_mut().end_call();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_named_by_wasmtime_are_classified() {
        let limits = Limits::default();
        let e = wasmtime::Error::msg("cannot allocate another handle: store handle limit exceeded");
        match Fatal::from_error(e, Duration::from_secs(1), &limits) {
            Fatal::Budget { key, .. } => assert_eq!(key, "max_handles"),
            other => panic!("{other:?}"),
        }
        let e = wasmtime::Error::msg("total size of fields exceeds limit");
        match Fatal::from_error(e, Duration::from_secs(1), &limits) {
            Fatal::Budget { key, .. } => assert_eq!(key, "http_field_bytes"),
            other => panic!("{other:?}"),
        }
        let e = wasmtime::Error::msg("resource limit exceeded: memory count too high at 5");
        let fatal = Fatal::from_error(e, Duration::from_secs(1), &limits);
        assert!(fatal.to_string().contains("limits.max_memories"), "{fatal}");
    }

    #[test]
    fn long_guest_errors_are_cut() {
        let text = guest_text("é".repeat(10_000));
        assert!(text.len() < MAX_GUEST_TEXT + 40, "{}", text.len());
        assert!(text.ends_with("bytes cut]"), "{text}");
        assert_eq!(guest_text("a\nb".into()), "a b");
    }

    #[test]
    fn the_reason_keeps_every_cause_on_one_line() {
        let e = wasmtime::Error::msg("root cause\nsecond line").context("while doing x");
        let text = reason(&e);
        assert_eq!(text, "while doing x: root cause second line");
    }
}
