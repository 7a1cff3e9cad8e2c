//! The host's input path. Sources hand everything to an [`Inputs`], which drops events
//! it has already seen, shows each new one to its taps (the RTMS client, which opens
//! streams on `*.rtms_started`; the dev view) and then passes it to the plugin runtime's
//! router. This is where a source's events reach another source: the router never calls
//! back up.
//!
//! **Each event once, whichever way it came.** Zoom may deliver one event on the event
//! WebSocket *and* as a webhook (an app subscribed both ways), and again as a webhook
//! retry (after 5, 20 and 60 minutes when a delivery was not acknowledged in time). Every
//! [`Event`] carries a content-derived `id` (name, `event_ts` and the canonical payload),
//! the same from both sources; an event whose id was seen within the window (65 minutes by
//! default) is dropped here and counted per source ([`Inputs::duplicates`]). A re-announced
//! `*.rtms_started` with a newer `event_ts` is a different event (Zoom's signal of an RTMS
//! server failover) and passes. The webhook receiver's own de-duplication by
//! `x-zm-request-id` still answers Zoom's retries before they are parsed, and counts them
//! as retries.
//!
//! **Cluster ingress** ([`Inputs::send_to`]): a new event goes, after the taps, to an
//! outlet (the JetStream publisher) instead of the local router, since workers deliver
//! it (a node with `role = "all"` through its own worker half). A webhook's event
//! ([`InputSink::accept`]) is kept only once the outlet reports JetStream's
//! acknowledgement within the accept timeout; otherwise its id is forgotten here, so
//! Zoom's retry passes again and JetStream's duplicate window collapses it should the
//! first attempt land late. While an event waits for that acknowledgement its outcome is
//! shared by id: a redelivery arriving meanwhile (a webhook retry, or the same event as a
//! webhook while its WebSocket copy is being published) is answered with the first
//! copy's outcome, not a premature 200, so an event whose publication then fails is
//! answered 503 and Zoom delivers it again.
//!
//! Memory is bounded: the ids (128 bits each) are kept in a map plus a time-ordered queue,
//! about 100 bytes an event, and at most `capacity` of them (200 000 by default, about
//! 20 MB); past that the oldest are forgotten first.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash as _, Hasher as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio::sync::{oneshot, watch};

pub use zoomhost_types::EventTap;
use zoomhost_types::{Acceptance, Event, EventSource, InputSink, StreamInfo, StreamSink};
pub use zoomhost_zoom::config::EventDedupeConfig;

/// Where a cluster ingress node sends its accepted events instead of its router: queues
/// one (never blocking) and returns a receiver of whether it was stored durably.
pub type Outlet = Arc<dyn Fn(&Event) -> oneshot::Receiver<Result<(), String>> + Send + Sync>;

/// The outcome of an event handed to the [`Outlet`]: `None` until JetStream answered.
type Outcome = Option<Result<(), String>>;

/// Events handed to the outlet and not answered yet, by id.
type InFlight = Arc<Mutex<HashMap<String, watch::Receiver<Outcome>>>>;

/// The input sink the sources deliver into.
pub struct Inputs {
    sink: Arc<dyn InputSink>,
    taps: RwLock<Vec<EventTap>>,
    outlet: RwLock<Option<(Outlet, Duration)>>,
    seen: Arc<Mutex<SeenEvents>>,
    in_flight: InFlight,
    /// Duplicates dropped, per [`EventSource`] (websocket, webhook, replay, simulator).
    duplicates: [AtomicU64; 4],
}

impl std::fmt::Debug for Inputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inputs")
            .field("duplicates", &self.duplicates())
            .finish_non_exhaustive()
    }
}

/// Duplicates dropped by the input path, per source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DuplicateCounts {
    /// From the event WebSocket.
    pub websocket: u64,
    /// From webhook deliveries.
    pub webhook: u64,
    /// From a replay file.
    pub replay: u64,
    /// From the built-in simulator.
    pub simulator: u64,
}

impl DuplicateCounts {
    /// All sources together.
    pub fn total(&self) -> u64 {
        self.websocket + self.webhook + self.replay + self.simulator
    }
}

fn source_index(source: EventSource) -> usize {
    match source {
        EventSource::Websocket => 0,
        EventSource::Webhook => 1,
        EventSource::Replay => 2,
        EventSource::Simulator => 3,
    }
}

impl Inputs {
    /// Inputs passed on to `sink` (the runtime's router), with the default
    /// de-duplication window.
    pub fn new(sink: Arc<dyn InputSink>) -> Arc<Self> {
        Self::with_dedupe(sink, EventDedupeConfig::default())
    }

    /// Inputs passed on to `sink`, remembering event ids as `dedupe` says.
    pub fn with_dedupe(sink: Arc<dyn InputSink>, dedupe: EventDedupeConfig) -> Arc<Self> {
        Arc::new(Self {
            sink,
            taps: RwLock::default(),
            outlet: RwLock::default(),
            seen: Arc::new(Mutex::new(SeenEvents::new(dedupe))),
            in_flight: Arc::default(),
            duplicates: Default::default(),
        })
    }

    /// Adds a tap that sees every event from now on.
    pub fn tap(&self, tap: EventTap) {
        self.taps
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(tap);
    }

    /// Sends every new event to `outlet` instead of the router from now on (cluster
    /// ingress); a webhook's event counts as kept once the outlet reports it stored within
    /// `accept_timeout`.
    pub fn send_to(&self, outlet: Outlet, accept_timeout: Duration) {
        *self.outlet.write().unwrap_or_else(|p| p.into_inner()) = Some((outlet, accept_timeout));
    }

    fn outlet(&self) -> Option<(Outlet, Duration)> {
        self.outlet
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether `event` is new (remembering it, and showing it to the taps); a duplicate
    /// is counted and dropped.
    fn admit(&self, event: &Event) -> bool {
        let first = self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first_sighting(&event.id, Instant::now());
        if !first {
            self.duplicates[source_index(event.source)].fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                event = %event.name,
                id = %event.id,
                source = ?event.source,
                "duplicate event dropped (already delivered)"
            );
            return false;
        }
        for tap in self.taps.read().unwrap_or_else(|p| p.into_inner()).iter() {
            tap(event);
        }
        true
    }

    /// Hands `event` to `outlet`; the future resolves with JetStream's answer (within
    /// `within` when given). Until then a redelivery of the same id awaits the same
    /// answer ([`Inputs::awaiting_first`]); an event that was not stored is forgotten, so
    /// a later redelivery passes again.
    fn send_out(
        &self,
        outlet: &Outlet,
        within: Option<Duration>,
        event: &Event,
    ) -> BoxFuture<'static, Result<(), String>> {
        let stored = outlet(event);
        let (tx, rx) = watch::channel(None);
        if !event.id.is_empty() {
            lock(&self.in_flight).insert(event.id.clone(), rx);
        }
        let settle = Settle {
            id: event.id.clone(),
            seen: self.seen.clone(),
            in_flight: self.in_flight.clone(),
            tx: Some(tx),
        };
        Box::pin(async move {
            let answer = async {
                match stored.await {
                    Ok(result) => result,
                    Err(_) => Err("the cluster publisher stopped".to_string()),
                }
            };
            let result = match within {
                Some(within) => tokio::time::timeout(within, answer)
                    .await
                    .unwrap_or_else(|_| {
                        Err(format!(
                            "JetStream did not acknowledge within {} ms",
                            within.as_millis()
                        ))
                    }),
                None => answer.await,
            };
            settle.settle(result.clone());
            result
        })
    }

    /// For a redelivery of an event still waiting for JetStream: the first copy's
    /// answer (waited for at most `within`).
    fn awaiting_first(&self, id: &str, within: Duration) -> Option<Acceptance> {
        let mut first = lock(&self.in_flight).get(id)?.clone();
        Some(Acceptance::Pending(Box::pin(async move {
            match tokio::time::timeout(within, first.wait_for(Option::is_some)).await {
                Ok(Ok(outcome)) => outcome.clone().unwrap_or(Ok(())),
                Ok(Err(_)) => Err("the first delivery of this event was abandoned".into()),
                Err(_) => Err(format!(
                    "JetStream did not acknowledge the first delivery within {} ms",
                    within.as_millis()
                )),
            }
        })))
    }

    /// Duplicates dropped so far, per source.
    pub fn duplicates(&self) -> DuplicateCounts {
        let get = |i: usize| self.duplicates[i].load(Ordering::Relaxed);
        DuplicateCounts {
            websocket: get(0),
            webhook: get(1),
            replay: get(2),
            simulator: get(3),
        }
    }

    /// Event ids remembered now.
    pub fn remembered(&self) -> usize {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl InputSink for Inputs {
    fn event(&self, event: Event) -> usize {
        if !self.admit(&event) {
            return 0;
        }
        match self.outlet() {
            // The publisher retries on its own; nobody to answer here, but a webhook copy
            // arriving meanwhile awaits the outcome.
            Some((outlet, _)) => {
                let answered = self.send_out(&outlet, None, &event);
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(answered);
                }
                0
            }
            None => self.sink.event(event),
        }
    }

    fn accept(&self, event: Event) -> Acceptance {
        let outlet = self.outlet();
        if !self.admit(&event) {
            // A redelivery while the first copy still waits for JetStream shares its answer.
            let waiting = outlet.and_then(|(_, within)| self.awaiting_first(&event.id, within));
            return waiting.unwrap_or(Acceptance::Now(0));
        }
        let Some((outlet, within)) = outlet else {
            return Acceptance::Now(self.sink.event(event));
        };
        Acceptance::Pending(self.send_out(&outlet, Some(within), &event))
    }

    fn open_stream(&self, info: StreamInfo) -> Box<dyn StreamSink> {
        self.sink.open_stream(info)
    }
}

/// Settles an event handed to the outlet once: publishes its outcome to redeliveries
/// waiting on it, forgets its id when it was not stored, and drops it from the in-flight
/// map. Dropped unsettled (the answer was abandoned), it settles as not stored.
struct Settle {
    id: String,
    seen: Arc<Mutex<SeenEvents>>,
    in_flight: InFlight,
    tx: Option<watch::Sender<Outcome>>,
}

impl Settle {
    fn settle(mut self, result: Result<(), String>) {
        self.finish(result);
    }

    fn finish(&mut self, result: Result<(), String>) {
        let Some(tx) = self.tx.take() else { return };
        if self.id.is_empty() {
            return;
        }
        if result.is_err() {
            // Not kept: a redelivery must pass again.
            lock(&self.seen).forget(&self.id);
        }
        {
            let mut in_flight = lock(&self.in_flight);
            // Only this copy's entry: a later copy (after a forget) may have its own.
            if in_flight
                .get(&self.id)
                .is_some_and(|rx| rx.same_channel(&tx.subscribe()))
            {
                in_flight.remove(&self.id);
            }
        }
        tx.send_replace(Some(result));
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        self.finish(Err(
            "the delivery was abandoned before JetStream answered".into()
        ));
    }
}

/// Locks `m`, recovering from a poisoned lock (the data stays consistent: every critical
/// section here is a single map operation).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Event ids seen within a window: a map for lookups plus a queue in arrival order for
/// forgetting, at most `capacity` entries.
#[derive(Debug)]
struct SeenEvents {
    config: EventDedupeConfig,
    at: HashMap<u128, Instant>,
    order: VecDeque<(Instant, u128)>,
}

impl SeenEvents {
    fn new(config: EventDedupeConfig) -> Self {
        Self {
            config,
            at: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn len(&self) -> usize {
        self.at.len()
    }

    /// Whether `id` was not seen within the window (and remembers it). An empty id is
    /// never a duplicate.
    fn first_sighting(&mut self, id: &str, now: Instant) -> bool {
        if id.is_empty() {
            return true;
        }
        self.forget_old(now);
        let key = key_of(id);
        if self.at.contains_key(&key) {
            return false;
        }
        self.at.insert(key, now);
        self.order.push_back((now, key));
        while self.order.len() > self.config.capacity.max(1) {
            self.pop_oldest();
        }
        true
    }

    /// Forgets `id` (an event that was not kept after all).
    fn forget(&mut self, id: &str) {
        if !id.is_empty() {
            self.at.remove(&key_of(id));
        }
    }

    fn forget_old(&mut self, now: Instant) {
        while self
            .order
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > self.config.window)
        {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((at, key)) = self.order.pop_front() {
            // Only when this is the id's latest sighting (a forgotten id may be back).
            if self.at.get(&key) == Some(&at) {
                self.at.remove(&key);
            }
        }
    }
}

/// The 128-bit key of an id: the id itself when it is 32 hex digits (what
/// `zoomhost_protocol::event_id` makes), else a hash of it.
fn key_of(id: &str) -> u128 {
    if id.len() == 32 {
        if let Ok(key) = u128::from_str_radix(id, 16) {
            return key;
        }
    }
    let mut a = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut a);
    let mut b = std::collections::hash_map::DefaultHasher::new();
    (id, 0x5eed_u16).hash(&mut b);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A router stand-in: counts what reaches it (nothing should, with an outlet).
    #[derive(Default)]
    struct Counting(AtomicU64);

    impl InputSink for Counting {
        fn event(&self, _event: Event) -> usize {
            self.0.fetch_add(1, Ordering::Relaxed);
            1
        }
        fn open_stream(&self, _info: StreamInfo) -> Box<dyn StreamSink> {
            unreachable!("no streams in these tests")
        }
    }

    type Answers = Arc<Mutex<Vec<oneshot::Sender<Result<(), String>>>>>;

    /// Inputs sending to an outlet whose answers the test gives by hand.
    fn ingress() -> (Arc<Inputs>, Answers) {
        let inputs = Inputs::new(Arc::new(Counting::default()));
        let answers: Answers = Arc::default();
        let pending = answers.clone();
        inputs.send_to(
            Arc::new(move |_event: &Event| {
                let (tx, rx) = oneshot::channel();
                lock(&pending).push(tx);
                rx
            }),
            Duration::from_secs(5),
        );
        (inputs, answers)
    }

    fn webhook(id: &str) -> Event {
        Event {
            id: id.into(),
            name: "meeting.started".into(),
            timestamp: 1,
            payload: "{}".into(),
            source: EventSource::Webhook,
        }
    }

    fn pending(acceptance: Acceptance) -> BoxFuture<'static, Result<(), String>> {
        match acceptance {
            Acceptance::Pending(answer) => answer,
            Acceptance::Now(n) => panic!("answered at once ({n}) instead of waiting"),
        }
    }

    #[tokio::test]
    async fn a_redelivery_while_the_first_waits_for_jetstream_gets_the_first_ones_answer() {
        let (inputs, answers) = ingress();
        let first = pending(inputs.accept(webhook("e1")));
        let retry = pending(inputs.accept(webhook("e1")));
        assert_eq!(lock(&answers).len(), 1, "published once");
        // JetStream refuses the first: both deliveries are told to come again.
        let answer = lock(&answers).pop().unwrap();
        answer.send(Err("no stream".into())).unwrap();
        assert_eq!(first.await, Err("no stream".to_string()));
        assert_eq!(retry.await, Err("no stream".to_string()));
        // And the next delivery is taken again, and kept this time.
        let again = pending(inputs.accept(webhook("e1")));
        let answer = lock(&answers).pop().unwrap();
        let late = pending(inputs.accept(webhook("e1")));
        answer.send(Ok(())).unwrap();
        assert_eq!(again.await, Ok(()));
        assert_eq!(late.await, Ok(()));
        // Once stored, a redelivery is a plain duplicate.
        assert!(matches!(inputs.accept(webhook("e1")), Acceptance::Now(0)));
        assert!(lock(&inputs.in_flight).is_empty());
    }

    #[tokio::test]
    async fn a_webhook_copy_of_a_websocket_event_being_published_waits_for_it() {
        let (inputs, answers) = ingress();
        let mut ws = webhook("e2");
        ws.source = EventSource::Websocket;
        assert_eq!(inputs.event(ws), 0);
        let copy = pending(inputs.accept(webhook("e2")));
        lock(&answers)
            .pop()
            .unwrap()
            .send(Err("NATS down".into()))
            .unwrap();
        assert_eq!(copy.await, Err("NATS down".to_string()));
        // Not stored: the webhook's retry is taken.
        let retry = pending(inputs.accept(webhook("e2")));
        lock(&answers).pop().unwrap().send(Ok(())).unwrap();
        assert_eq!(retry.await, Ok(()));
    }

    #[tokio::test]
    async fn an_abandoned_first_delivery_is_forgotten() {
        let (inputs, _answers) = ingress();
        drop(pending(inputs.accept(webhook("e3"))));
        assert!(lock(&inputs.in_flight).is_empty());
        assert!(matches!(
            inputs.accept(webhook("e3")),
            Acceptance::Pending(_)
        ));
    }

    fn seen(window_ms: u64, capacity: usize) -> SeenEvents {
        SeenEvents::new(EventDedupeConfig {
            window: Duration::from_millis(window_ms),
            capacity,
        })
    }

    #[test]
    fn an_id_is_seen_once_within_the_window() {
        let mut s = seen(1000, 10);
        let t0 = Instant::now();
        let id = zoomhost_protocol::event_id("meeting.started", 1, &serde_json::json!({}));
        assert!(s.first_sighting(&id, t0));
        assert!(!s.first_sighting(&id, t0 + Duration::from_millis(999)));
        // Past the window it is forgotten.
        assert!(s.first_sighting(&id, t0 + Duration::from_millis(2100)));
        assert!(s.first_sighting("", t0) && s.first_sighting("", t0));
        assert!(s.first_sighting("not-hex", t0));
        assert!(!s.first_sighting("not-hex", t0));
    }

    #[test]
    fn memory_is_bounded_by_the_cap_oldest_forgotten_first() {
        let mut s = seen(60_000, 3);
        let t0 = Instant::now();
        for id in ["a", "b", "c", "d"] {
            assert!(s.first_sighting(id, t0));
        }
        assert_eq!(s.len(), 3);
        assert_eq!(s.order.len(), 3);
        assert!(s.first_sighting("a", t0), "the oldest was forgotten");
        assert!(!s.first_sighting("d", t0));
    }

    #[test]
    fn a_newer_rtms_started_is_a_different_event() {
        let payload = serde_json::json!({"rtms_stream_id": "s1", "server_urls": "wss://a"});
        let first = zoomhost_protocol::event_id("meeting.rtms_started", 100, &payload);
        let failover = zoomhost_protocol::event_id("meeting.rtms_started", 200, &payload);
        let mut s = seen(60_000, 10);
        let t0 = Instant::now();
        assert!(s.first_sighting(&first, t0));
        assert!(s.first_sighting(&failover, t0));
        assert!(!s.first_sighting(&first, t0), "a late retry of the first");
    }
}
