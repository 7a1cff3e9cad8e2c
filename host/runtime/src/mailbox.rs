//! A plugin's bounded mailbox, and the policy that keeps one congested plugin from
//! slowing the sources or the other plugins:
//!
//! * Pushing never blocks the caller (the router, and so the sources).
//! * **Events** beyond `mailbox_capacity` are still queued, but only for `event_wait`:
//!   one that is still waiting when that bound passes is dropped for this plugin only
//!   and counted in `events_dropped`. Past a hard cap (4 × capacity) new events are
//!   dropped at once, so memory stays bounded.
//! * **Audio frames** are real-time: when `audio_queue_frames` are already waiting, the
//!   oldest queued frame is dropped (counted in `audio_dropped`) to make room.
//! * Session opens/closes and other media updates are never dropped by congestion.
//! * Everything is delivered in the order it was pushed.
//!
//! An event may carry a [`Ticket`]: a share of a [`Completion`] that resolves once every
//! ticket of it is gone. A ticket goes away when the actor has finished the plugin's
//! call for the event (whatever its outcome: returned, failed, trapped, timed out, or
//! skipped because the instance is quarantined) or when this policy drops the event
//! (expired, past the hard cap, or refused by a closed mailbox). So a completion tells
//! "every subscribed plugin is done with this event", which is when a cluster worker
//! acknowledges it; the runtime itself knows nothing of what the caller does then.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Notify};

use crate::bindings::types::{
    AudioFrame, ChatMessage, Event, Participant, StreamInfo, StreamState, TranscriptSegment,
    VideoFrame,
};
use crate::stats::PluginStats;

/// One media item for one stream.
#[derive(Debug, Clone)]
pub enum MediaItem {
    /// The stream opened (per-plugin info: the media kinds it gets).
    Open(Arc<StreamInfo>),
    /// An audio frame.
    Audio(Arc<AudioFrame>),
    /// A transcript segment.
    Transcript(Arc<TranscriptSegment>),
    /// A video frame.
    Video(Arc<VideoFrame>),
    /// A screen-share frame.
    Share(Arc<VideoFrame>),
    /// A chat message.
    Chat(Arc<ChatMessage>),
    /// A participant joined.
    Join(Participant),
    /// A participant left.
    Leave(Participant),
    /// The active speaker changed.
    Speaker(Participant),
    /// The stream changed state.
    State(StreamState),
    /// The stream ended.
    Close,
}

/// A share of a [`Completion`], carried with each queued copy of a tracked event and
/// dropped when that copy is done with (see the module docs).
#[derive(Debug, Clone)]
pub struct Ticket(#[allow(dead_code)] Arc<oneshot::Sender<()>>);

/// Resolves once every [`Ticket`] made with it is dropped: every plugin the event was
/// queued for has finished its call for it, or the mailbox policy dropped it.
#[derive(Debug)]
pub struct Completion {
    /// `None` once seen done (a finished receiver must not be polled again).
    done: Option<oneshot::Receiver<()>>,
    queued: Vec<Arc<str>>,
}

impl Completion {
    /// A completion and its first ticket.
    pub fn new() -> (Self, Ticket) {
        let (tx, rx) = oneshot::channel();
        (
            Self {
                done: Some(rx),
                queued: Vec::new(),
            },
            Ticket(Arc::new(tx)),
        )
    }

    /// The plugins the event was queued for.
    pub fn queued(&self) -> &[Arc<str>] {
        &self.queued
    }

    pub(crate) fn set_queued(&mut self, queued: Vec<Arc<str>>) {
        self.queued = queued;
    }

    /// Waits until every ticket is gone.
    pub async fn wait(self) {
        // Nobody ever sends: the channel closes when the last ticket's sender drops.
        if let Some(done) = self.done {
            let _ = done.await;
        }
    }

    /// Whether every ticket is gone already.
    pub fn is_done(&mut self) -> bool {
        let finished = self
            .done
            .as_mut()
            .is_none_or(|d| !matches!(d.try_recv(), Err(oneshot::error::TryRecvError::Empty)));
        if finished {
            self.done = None;
        }
        finished
    }
}

/// One delivery waiting for a plugin.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// An event, with the ticket of its completion if it is tracked.
    Event(Arc<Event>, Option<Ticket>),
    /// A media item for the stream with this id.
    Media(Arc<str>, MediaItem),
}

impl Delivery {
    fn is_audio(&self) -> bool {
        matches!(self, Delivery::Media(_, MediaItem::Audio(_)))
    }
}

struct Queued {
    delivery: Delivery,
    /// For events queued beyond capacity: when they stop being worth delivering.
    expires: Option<Instant>,
}

struct Inner {
    queue: VecDeque<Queued>,
    audio: usize,
    closed: bool,
}

/// Sizes for one mailbox.
#[derive(Debug, Clone, Copy)]
pub struct MailboxLimits {
    /// Deliveries queued before events start to wait.
    pub capacity: usize,
    /// How long an event beyond capacity may wait.
    pub event_wait: Duration,
    /// Audio frames queued before the oldest is dropped.
    pub audio_frames: usize,
}

/// A plugin's mailbox: many producers, one consumer (the plugin's actor).
pub struct Mailbox {
    inner: Mutex<Inner>,
    ready: Notify,
    limits: MailboxLimits,
    stats: Arc<PluginStats>,
}

impl Mailbox {
    /// An empty, open mailbox.
    pub fn new(limits: MailboxLimits, stats: Arc<PluginStats>) -> Self {
        Self {
            inner: Mutex::new(Inner {
                queue: VecDeque::with_capacity(limits.capacity.min(4096)),
                audio: 0,
                closed: false,
            }),
            ready: Notify::new(),
            limits,
            stats,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an event per the policy above. Returns false if it was dropped.
    pub fn push_event(&self, event: Arc<Event>) -> bool {
        self.push_tracked_event(event, None)
    }

    /// Queues an event with a completion's ticket (dropped with the event, or after the
    /// plugin's call for it). Returns false if it was dropped.
    pub fn push_tracked_event(&self, event: Arc<Event>, ticket: Option<Ticket>) -> bool {
        let mut inner = self.lock();
        if inner.closed {
            return false;
        }
        let len = inner.queue.len();
        let expires = if len >= self.limits.capacity.saturating_mul(4) {
            drop(inner);
            PluginStats::bump(&self.stats.events_dropped);
            return false;
        } else if len >= self.limits.capacity {
            Some(Instant::now() + self.limits.event_wait)
        } else {
            None
        };
        inner.queue.push_back(Queued {
            delivery: Delivery::Event(event, ticket),
            expires,
        });
        drop(inner);
        self.ready.notify_one();
        true
    }

    /// Queues a media item per the policy above. Returns false if the mailbox is closed.
    pub fn push_media(&self, stream: Arc<str>, item: MediaItem) -> bool {
        let delivery = Delivery::Media(stream, item);
        let mut inner = self.lock();
        if inner.closed {
            return false;
        }
        if delivery.is_audio() {
            if inner.audio >= self.limits.audio_frames {
                if let Some(pos) = inner.queue.iter().position(|q| q.delivery.is_audio()) {
                    inner.queue.remove(pos);
                    inner.audio -= 1;
                    PluginStats::bump(&self.stats.audio_dropped);
                }
            }
            inner.audio += 1;
        }
        inner.queue.push_back(Queued {
            delivery,
            expires: None,
        });
        drop(inner);
        self.ready.notify_one();
        true
    }

    /// Takes the next delivery, waiting for one; `None` once closed and drained.
    /// Cancel-safe.
    pub async fn pop(&self) -> Option<Delivery> {
        loop {
            if let Some(next) = self.try_pop() {
                return next;
            }
            self.ready.notified().await;
        }
    }

    /// `Some(Some(d))`: a delivery; `Some(None)`: closed and drained; `None`: empty.
    pub(crate) fn try_pop(&self) -> Option<Option<Delivery>> {
        let mut inner = self.lock();
        // The clock is read only for events that can expire (queued beyond capacity).
        let mut now = None;
        while let Some(q) = inner.queue.pop_front() {
            if q.expires
                .is_some_and(|t| *now.get_or_insert_with(Instant::now) >= t)
            {
                PluginStats::bump(&self.stats.events_dropped);
                continue;
            }
            if q.delivery.is_audio() {
                inner.audio -= 1;
            }
            return Some(Some(q.delivery));
        }
        inner.closed.then_some(None)
    }

    /// Stops accepting; the actor drains what is queued and then stops.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    /// Deliveries waiting now.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::types::EventSource;

    fn event(i: u64) -> Arc<Event> {
        Arc::new(Event {
            id: format!("event-{i}"),
            name: "meeting.started".into(),
            timestamp: i,
            payload: "{}".into(),
            source: EventSource::Replay,
        })
    }

    fn frame(ts: u64) -> MediaItem {
        MediaItem::Audio(Arc::new(AudioFrame {
            user_id: 1,
            user_name: "a".into(),
            timestamp: ts,
            data: vec![0; 4],
        }))
    }

    fn mailbox(capacity: usize, wait_ms: u64, audio: usize) -> (Mailbox, Arc<PluginStats>) {
        let stats = Arc::new(PluginStats::default());
        let limits = MailboxLimits {
            capacity,
            event_wait: Duration::from_millis(wait_ms),
            audio_frames: audio,
        };
        (Mailbox::new(limits, stats.clone()), stats)
    }

    #[tokio::test]
    async fn events_beyond_capacity_expire_and_are_counted() {
        let (mb, stats) = mailbox(2, 0, 10);
        for i in 0..5 {
            assert!(mb.push_event(event(i)));
        }
        // Two within capacity survive; three waited past a zero bound.
        let mut got = Vec::new();
        mb.close();
        while let Some(Delivery::Event(e, _)) = mb.pop().await {
            got.push(e.timestamp);
        }
        assert_eq!(got, vec![0, 1]);
        assert_eq!(stats.snapshot().events_dropped, 3);
    }

    #[tokio::test]
    async fn hard_cap_drops_at_once() {
        let (mb, stats) = mailbox(1, 60_000, 10);
        let accepted = (0..10).filter(|i| mb.push_event(event(*i))).count();
        assert_eq!(accepted, 4);
        assert_eq!(stats.snapshot().events_dropped, 6);
    }

    #[tokio::test]
    async fn audio_drops_oldest_and_keeps_order_and_controls() {
        let (mb, stats) = mailbox(100, 1000, 2);
        let s: Arc<str> = Arc::from("s1");
        mb.push_media(
            s.clone(),
            MediaItem::Join(Participant {
                user_id: 1,
                user_name: "a".into(),
            }),
        );
        for ts in 0..5 {
            mb.push_media(s.clone(), frame(ts));
        }
        mb.push_media(s.clone(), MediaItem::Close);
        mb.close();
        let mut seen = Vec::new();
        while let Some(Delivery::Media(_, item)) = mb.pop().await {
            seen.push(match item {
                MediaItem::Audio(f) => format!("a{}", f.timestamp),
                MediaItem::Join(_) => "join".into(),
                MediaItem::Close => "close".into(),
                _ => "?".into(),
            });
        }
        assert_eq!(seen, vec!["join", "a3", "a4", "close"]);
        assert_eq!(stats.snapshot().audio_dropped, 3);
    }

    #[tokio::test]
    async fn a_completion_resolves_when_its_events_are_delivered_or_dropped() {
        let (mb, _) = mailbox(1, 0, 10);
        let (mut done, ticket) = Completion::new();
        // One queued within capacity, one expiring beyond it, one past the hard cap.
        for i in 0..6 {
            mb.push_tracked_event(event(i), Some(ticket.clone()));
        }
        drop(ticket);
        assert!(!done.is_done());
        let first = mb.pop().await;
        assert!(matches!(first, Some(Delivery::Event(_, Some(_)))));
        // The expired ones are dropped by the next pop; the one taken is still held.
        mb.close();
        assert!(mb.pop().await.is_none());
        assert!(
            !done.is_done(),
            "the delivery being handled holds its ticket"
        );
        drop(first);
        assert!(done.is_done());
        done.wait().await;
        let (nothing, _) = Completion::new();
        nothing.wait().await;
    }

    #[tokio::test]
    async fn closed_mailbox_refuses() {
        let (mb, _) = mailbox(10, 10, 10);
        mb.close();
        assert!(!mb.push_event(event(1)));
        assert!(mb.pop().await.is_none());
    }
}
