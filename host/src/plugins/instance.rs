//! One live instance of a plugin: its store, its exports, and its open media sessions.
//! Every call runs under a deadline (epoch ticks for guest code, a wall-clock backstop
//! for host waits such as outbound HTTP) and the store's memory cap.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceAny;
use wasmtime::{Store, Trap, UpdateDeadline};

use super::bindings::types::{Event, Metadata, StreamInfo};
use super::bindings::Plugin;
use super::identity::PluginIdentity;
use super::mailbox::MediaItem;
use super::runtime::{CompiledPlugin, Runtime, EPOCH_TICK};
use super::store::StoreState;

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
    /// The instance tried to grow memory past its cap.
    MemoryCap(String),
    /// The guest trapped (panic, unreachable, ...).
    Trap(String),
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fatal::Deadline(d) => write!(f, "deadline of {} ms exceeded", d.as_millis()),
            Fatal::MemoryCap(m) => write!(f, "memory cap hit: {m}"),
            Fatal::Trap(m) => write!(f, "trap: {m}"),
        }
    }
}

impl Fatal {
    fn from_error(e: wasmtime::Error, deadline: Duration) -> Self {
        if e.is::<DeadlineExceeded>() {
            return Fatal::Deadline(deadline);
        }
        let text = format!("{e:#}");
        if text.contains("forcing trap when growing memory") {
            return Fatal::MemoryCap(first_line(&text));
        }
        if let Some(trap) = e.downcast_ref::<Trap>() {
            if *trap == Trap::Interrupt {
                return Fatal::Deadline(deadline);
            }
            return Fatal::Trap(format!("{trap} ({})", first_line(&text)));
        }
        Fatal::Trap(first_line(&text))
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).to_string()
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
    plugin: Plugin,
    sessions: HashMap<Arc<str>, ResourceAny>,
    metadata: Metadata,
    event_deadline: Duration,
    media_deadline: Duration,
}

/// Wall-clock allowance past a deadline before the backstop fires (the epoch check
/// normally fires first, within one tick).
fn backstop(deadline: Duration) -> Duration {
    deadline + deadline / 4 + EPOCH_TICK * 4
}

async fn guarded<R>(
    deadline: Duration,
    fut: impl Future<Output = wasmtime::Result<R>>,
) -> Result<R, Fatal> {
    match tokio::time::timeout(backstop(deadline), fut).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(Fatal::from_error(e, deadline)),
        Err(_) => Err(Fatal::Deadline(deadline)),
    }
}

fn guest_result(r: Result<(), String>) -> Result<(), CallError> {
    r.map_err(CallError::Guest)
}

impl LiveInstance {
    /// Instantiates `compiled`, reads its metadata and runs `init`, each under the event
    /// deadline. Any failure is returned as text naming the step.
    pub async fn start(
        runtime: &Runtime,
        compiled: &CompiledPlugin,
        identity: Arc<PluginIdentity>,
    ) -> Result<Self, String> {
        let limits = runtime.limits();
        let mut store = Store::new(
            runtime.engine(),
            StoreState::new(identity, limits.memory_bytes()),
        );
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() >= ctx.data().deadline {
                Err(wasmtime::Error::new(DeadlineExceeded))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        let deadline = limits.event_deadline();
        arm(&mut store, deadline);
        let plugin = guarded(deadline, compiled.pre.instantiate_async(&mut store))
            .await
            .map_err(|e| format!("instantiate failed: {e}"))?;
        arm(&mut store, deadline);
        let metadata = guarded(
            deadline,
            plugin.zoomhost_plugin_guest().call_metadata(&mut store),
        )
        .await
        .map_err(|e| format!("metadata() failed: {e}"))?;
        arm(&mut store, deadline);
        guarded(
            deadline,
            plugin.zoomhost_plugin_guest().call_init(&mut store),
        )
        .await
        .map_err(|e| format!("init() failed: {e}"))?
        .map_err(|e| format!("init() returned error: {e}"))?;
        Ok(Self {
            store,
            plugin,
            sessions: HashMap::new(),
            metadata,
            event_deadline: deadline,
            media_deadline: limits.media_deadline(),
        })
    }

    /// What the plugin declared.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Streams with a session open in this instance.
    pub fn open_sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Delivers one event.
    pub async fn handle_event(&mut self, event: &Event) -> Result<(), CallError> {
        arm(&mut self.store, self.event_deadline);
        let guest = self.plugin.zoomhost_plugin_guest();
        let r = guarded(
            self.event_deadline,
            guest.call_handle_event(&mut self.store, event),
        )
        .await?;
        guest_result(r)
    }

    /// Opens a media session for a stream.
    pub async fn open_session(
        &mut self,
        stream: &Arc<str>,
        info: &StreamInfo,
    ) -> Result<(), CallError> {
        arm(&mut self.store, self.media_deadline);
        let guest = self.plugin.zoomhost_plugin_guest();
        let session = guarded(
            self.media_deadline,
            guest
                .media_session()
                .call_constructor(&mut self.store, info),
        )
        .await?;
        if let Some(old) = self.sessions.insert(stream.clone(), session) {
            // A stream reopened without a close: end the old session first.
            arm(&mut self.store, self.media_deadline);
            guarded(
                self.media_deadline,
                old.resource_drop_async(&mut self.store),
            )
            .await?;
        }
        Ok(())
    }

    /// Ends a stream's session (the guest's destructor runs).
    pub async fn close_session(&mut self, stream: &str) -> Result<(), CallError> {
        let Some(session) = self.sessions.remove(stream) else {
            return Ok(());
        };
        arm(&mut self.store, self.media_deadline);
        guarded(
            self.media_deadline,
            session.resource_drop_async(&mut self.store),
        )
        .await?;
        Ok(())
    }

    /// Delivers one media item (not open/close) to a stream's session. An item for a
    /// stream with no session is ignored (`Ok(false)`).
    pub async fn media(&mut self, stream: &str, item: &MediaItem) -> Result<bool, CallError> {
        let Some(session) = self.sessions.get(stream).copied() else {
            return Ok(false);
        };
        arm(&mut self.store, self.media_deadline);
        let guest = self.plugin.zoomhost_plugin_guest();
        let s = guest.media_session();
        let store = &mut self.store;
        let d = self.media_deadline;
        let r = match item {
            MediaItem::Audio(f) => guarded(d, s.call_on_audio(store, session, f)).await?,
            MediaItem::Transcript(t) => guarded(d, s.call_on_transcript(store, session, t)).await?,
            MediaItem::Video(f) => guarded(d, s.call_on_video(store, session, f)).await?,
            MediaItem::Share(f) => guarded(d, s.call_on_share(store, session, f)).await?,
            MediaItem::Chat(m) => guarded(d, s.call_on_chat(store, session, m)).await?,
            MediaItem::Join(p) => guarded(d, s.call_on_participant_join(store, session, p)).await?,
            MediaItem::Leave(p) => {
                guarded(d, s.call_on_participant_leave(store, session, p)).await?
            }
            MediaItem::Speaker(p) => {
                guarded(d, s.call_on_active_speaker(store, session, p)).await?
            }
            MediaItem::State(st) => guarded(d, s.call_on_stream_state(store, session, *st)).await?,
            MediaItem::Open(_) | MediaItem::Close => return Ok(false),
        };
        guest_result(r).map(|()| true)
    }

    /// The plugin's state for the next version, if it keeps any.
    pub async fn snapshot(&mut self) -> Result<Option<Vec<u8>>, CallError> {
        arm(&mut self.store, self.event_deadline);
        let guest = self.plugin.zoomhost_plugin_guest();
        Ok(guarded(self.event_deadline, guest.call_snapshot(&mut self.store)).await?)
    }

    /// Hands the previous version's state to this one.
    pub async fn restore(&mut self, state: &[u8]) -> Result<(), CallError> {
        arm(&mut self.store, self.event_deadline);
        let guest = self.plugin.zoomhost_plugin_guest();
        let r = guarded(
            self.event_deadline,
            guest.call_restore(&mut self.store, state),
        )
        .await?;
        guest_result(r)
    }
}

/// Sets the deadline for the next call.
fn arm(store: &mut Store<StoreState>, deadline: Duration) {
    store.data_mut().set_deadline(Instant::now() + deadline);
    store.set_epoch_deadline(1);
}
