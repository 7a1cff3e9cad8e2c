//! One task per plugin instance owns that instance and takes deliveries from its mailbox,
//! in order (a plugin with `instances = N` has N actors, each with its own mailbox). It
//! is also where failures are contained (restart, re-open sessions, quarantine) and
//! where a new version is swapped in, always between two deliveries.
//!
//! Failures are counted and acted on per instance: an instance that fails
//! `max_failures` times within `failure_window_s` is quarantined alone (the meetings
//! that hash to it get nothing until a new version is loaded); the plugin's other
//! instances keep serving theirs. The plugin reports quarantined while any instance is.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use tokio::sync::{mpsc, oneshot};

use crate::bindings::types::StreamInfo;
use crate::engine::{CompiledPlugin, Runtime};
use crate::identity::PluginIdentity;
use crate::instance::{CallError, Fatal, LiveInstance};
use crate::mailbox::{Delivery, Mailbox, MediaItem};
use crate::stats::{FailureReason, PluginStats};

/// Deliveries in a row after which a busy actor yields to its thread's other tasks.
const YIELD_EVERY: u32 = 64;

/// What a swap did.
#[derive(Debug, Clone)]
pub struct SwapReport {
    /// Time from taking the new instance to serving with it.
    pub took: Duration,
    /// Bytes of state handed over (`None`: the old version kept none or failed to give it).
    pub state_bytes: Option<usize>,
    /// Media sessions re-opened on the new version.
    pub sessions_reopened: usize,
}

/// Orders for an actor, taken between deliveries.
pub enum Control {
    /// Serve with this new, already initialised instance from now on.
    Swap {
        /// The new instance.
        instance: Box<LiveInstance>,
        /// Its compiled component (for restarts).
        compiled: Arc<CompiledPlugin>,
        /// Told when done: the report, or why the new version was refused (the running
        /// one keeps serving).
        done: oneshot::Sender<Result<SwapReport, String>>,
    },
}

/// The actor's state.
pub struct Actor {
    runtime: Arc<Runtime>,
    identity: Arc<PluginIdentity>,
    /// Which of the plugin's instances this actor runs.
    index: u32,
    /// This instance's counters (the plugin's are their sum).
    stats: Arc<PluginStats>,
    mailbox: Arc<Mailbox>,
    control: mpsc::Receiver<Control>,
    compiled: Arc<CompiledPlugin>,
    current: Option<LiveInstance>,
    /// Streams open now, in opening order, with the info they were opened with.
    streams: IndexMap<Arc<str>, Arc<StreamInfo>>,
    failures: VecDeque<Instant>,
}

impl Actor {
    /// An actor serving `instance`, the plugin's instance number `index`, counting into
    /// `stats`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        runtime: Arc<Runtime>,
        identity: Arc<PluginIdentity>,
        index: u32,
        stats: Arc<PluginStats>,
        mailbox: Arc<Mailbox>,
        control: mpsc::Receiver<Control>,
        compiled: Arc<CompiledPlugin>,
        instance: LiveInstance,
    ) -> Self {
        Self {
            runtime,
            identity,
            index,
            stats,
            mailbox,
            control,
            compiled,
            current: Some(instance),
            streams: IndexMap::new(),
            failures: VecDeque::new(),
        }
    }

    fn stats(&self) -> &PluginStats {
        &self.stats
    }

    /// Runs until the mailbox is closed and drained.
    pub async fn run(mut self) {
        // Deliveries since the actor last waited or yielded.
        let mut run = 0u32;
        loop {
            // Between two deliveries: an order first (a swap), else what is queued. Only
            // an actor with nothing to do waits on both (registering its waker once per
            // wait, not once per delivery); a busy one yields to the thread's other tasks
            // (the sockets that feed it) now and then.
            run += 1;
            if run > YIELD_EVERY {
                run = 0;
                tokio::task::yield_now().await;
            }
            match self.control.try_recv() {
                Ok(control) => {
                    self.on_control(control).await;
                    continue;
                }
                Err(mpsc::error::TryRecvError::Empty) => {}
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    // Nobody can send orders any more: only the mailbox is left.
                    while let Some(delivery) = self.mailbox.pop().await {
                        self.deliver(delivery).await;
                    }
                    break;
                }
            }
            match self.mailbox.try_pop() {
                Some(Some(delivery)) => {
                    self.deliver(delivery).await;
                    continue;
                }
                Some(None) => break,
                None => {}
            }
            run = 0;
            tokio::select! {
                biased;
                Some(control) = self.control.recv() => self.on_control(control).await,
                next = self.mailbox.pop() => match next {
                    Some(delivery) => self.deliver(delivery).await,
                    None => break,
                },
            }
        }
        tracing::info!(
            plugin = self.identity.name(),
            instance = self.index,
            "plugin unloaded"
        );
    }

    async fn on_control(&mut self, control: Control) {
        match control {
            Control::Swap {
                instance,
                compiled,
                done,
            } => {
                let report = self.swap(*instance, compiled).await;
                let _ = done.send(report);
            }
        }
    }

    /// Swaps `next` in, handing over the old version's state. Only a healthy instance is
    /// installed: if `restore` fails or is killed while the old version is alive, the new
    /// version is refused and the old one keeps serving. If the old version is killed
    /// while taking its snapshot, the new one is installed without state (logged).
    async fn swap(
        &mut self,
        mut next: LiveInstance,
        compiled: Arc<CompiledPlugin>,
    ) -> Result<SwapReport, String> {
        let started = Instant::now();
        let mut state_bytes = None;
        if let Some(old) = self.current.as_mut() {
            match old.snapshot().await {
                Ok(Some(state)) => {
                    state_bytes = Some(state.len());
                    if let Err(e) = next.restore(&state).await {
                        return Err(format!(
                            "restore() of the new version failed: {e} (the old version's state was {} bytes)",
                            state.len()
                        ));
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    let why = format!("while taking its snapshot for a swap: {e}");
                    self.stats().record_crash(why.clone());
                    self.current = None;
                    tracing::error!(
                        plugin = self.identity.name(),
                        instance = self.index,
                        "old version killed {why}; the new version starts without its state"
                    );
                }
            }
        }
        // The old instance goes away without running session destructors: its streams
        // have not ended, they continue on the new version.
        self.current = Some(next);
        self.compiled = compiled;
        self.failures.clear();
        if self.stats().quarantined.swap(false, Relaxed) {
            tracing::info!(
                plugin = self.identity.name(),
                instance = self.index,
                "quarantine lifted by new version"
            );
        }
        PluginStats::bump(&self.stats().swaps);
        let sessions_reopened = match self.reopen_sessions().await {
            Ok(n) => n,
            Err(f) => {
                self.fail(f, "re-opening media sessions after a swap").await;
                0
            }
        };
        Ok(SwapReport {
            took: started.elapsed(),
            state_bytes,
            sessions_reopened,
        })
    }

    /// Opens every live stream's session on the current instance; returns how many
    /// opened, or the failure that killed the instance.
    async fn reopen_sessions(&mut self) -> Result<usize, Fatal> {
        let mut opened = 0;
        let streams: Vec<_> = self
            .streams
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (stream, info) in streams {
            let Some(instance) = self.current.as_mut() else {
                break;
            };
            match instance.open_session(&stream, &info).await {
                Ok(()) => opened += 1,
                Err(CallError::Guest(e)) => tracing::warn!(
                    plugin = self.identity.name(),
                    instance = self.index,
                    stream = &*stream,
                    "re-opening media session failed: {e}"
                ),
                Err(CallError::Fatal(f)) => return Err(f),
            }
        }
        Ok(opened)
    }

    async fn deliver(&mut self, delivery: Delivery) {
        // Stream bookkeeping happens whatever the instance's health, so a restarted or
        // swapped instance re-opens exactly the streams that are live.
        if let Delivery::Media(stream, item) = &delivery {
            match item {
                MediaItem::Open(info) => {
                    self.streams.insert(stream.clone(), info.clone());
                }
                MediaItem::Close => {
                    self.streams.shift_remove(stream);
                }
                _ => {}
            }
        }
        let is_event = matches!(delivery, Delivery::Event(..));
        let Some(instance) = self.current.as_mut() else {
            let counter = if is_event {
                &self.stats().events_dropped
            } else {
                &self.stats().media_dropped
            };
            PluginStats::bump(counter);
            return;
        };
        let started = Instant::now();
        let result = match &delivery {
            Delivery::Event(event, _) => instance.handle_event(event).await,
            Delivery::Media(stream, MediaItem::Open(info)) => {
                instance.open_session(stream, info).await
            }
            Delivery::Media(stream, MediaItem::Close) => instance.close_session(stream).await,
            Delivery::Media(stream, item) => match instance.media(stream, item).await {
                Ok(true) => Ok(()),
                Ok(false) => {
                    // No session for this stream (its open failed): nothing to deliver to.
                    PluginStats::bump(&self.stats().media_dropped);
                    return;
                }
                Err(e) => Err(e),
            },
        };
        let busy = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.stats().record_call(is_event, busy);
        let (delivered, failed) = if is_event {
            (&self.stats().events_delivered, &self.stats().events_failed)
        } else {
            (&self.stats().media_delivered, &self.stats().media_failed)
        };
        PluginStats::bump(delivered);
        match result {
            Ok(()) => {}
            Err(CallError::Guest(e)) => {
                PluginStats::bump(failed);
                self.stats().record_failure(FailureReason::HandlerError);
                tracing::warn!(
                    plugin = self.identity.name(),
                    instance = self.index,
                    "{} failed: {e}",
                    describe(&delivery)
                );
            }
            Err(CallError::Fatal(f)) => {
                PluginStats::bump(failed);
                self.stats().record_failure(FailureReason::of(&f));
                self.fail(f, &describe(&delivery)).await;
            }
        }
    }

    /// The instance died: log, count, then restart it (re-opening live sessions) or
    /// quarantine the plugin.
    async fn fail(&mut self, fatal: Fatal, doing: &str) {
        let name = self.identity.name().to_string();
        let mut fatal = fatal;
        let mut doing = doing.to_string();
        loop {
            self.current = None;
            self.stats().record_crash(format!("while {doing}: {fatal}"));
            let grant = self.identity.grant();
            let limits = &grant.limits;
            let now = Instant::now();
            self.failures.push_back(now);
            while self
                .failures
                .front()
                .is_some_and(|t| now.duration_since(*t) > limits.failure_window())
            {
                self.failures.pop_front();
            }
            tracing::error!(
                plugin = name.as_str(),
                instance = self.index,
                reason = %fatal,
                "plugin instance killed while {doing}: {fatal}"
            );
            if self.failures.len() >= limits.max_failures as usize {
                let why = format!(
                    "{} failures within {} s (last: {fatal})",
                    self.failures.len(),
                    limits.failure_window_s
                );
                self.quarantine(&why);
                return;
            }
            match LiveInstance::start_as(
                &self.runtime,
                &self.compiled,
                self.identity.clone(),
                self.index,
            )
            .await
            {
                Ok(instance) => {
                    self.current = Some(instance);
                    match self.reopen_sessions().await {
                        Ok(reopened) => {
                            PluginStats::bump(&self.stats().restarts);
                            tracing::info!(
                                plugin = name.as_str(),
                                instance = self.index,
                                sessions = reopened,
                                "plugin restarted with a fresh instance"
                            );
                            return;
                        }
                        Err(f) => {
                            fatal = f;
                            doing = "re-opening media sessions after a restart".into();
                        }
                    }
                }
                Err(e) => {
                    self.quarantine(&format!("restart failed: {e}"));
                    return;
                }
            }
        }
    }

    fn quarantine(&mut self, why: &str) {
        self.current = None;
        self.stats().quarantined.store(true, Relaxed);
        tracing::error!(
            plugin = self.identity.name(),
            instance = self.index,
            "plugin instance QUARANTINED: {why}; no deliveries to it until a new version is loaded"
        );
    }
}

/// What a delivery is, for log lines.
fn describe(delivery: &Delivery) -> String {
    match delivery {
        Delivery::Event(e, _) => format!("handling event {}", e.name),
        Delivery::Media(s, item) => {
            let what = match item {
                MediaItem::Open(_) => "opening the session",
                MediaItem::Audio(_) => "an audio frame",
                MediaItem::Transcript(_) => "a transcript segment",
                MediaItem::Video(_) => "a video frame",
                MediaItem::Share(_) => "a share frame",
                MediaItem::Chat(_) => "a chat message",
                MediaItem::Join(_) => "a participant join",
                MediaItem::Leave(_) => "a participant leave",
                MediaItem::Speaker(_) => "an active-speaker change",
                MediaItem::State(_) => "a stream-state change",
                MediaItem::Close => "closing the session",
            };
            format!("handling {what} of stream {s}")
        }
    }
}
