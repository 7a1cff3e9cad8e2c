//! The per-stream outbox of transcript segments, and how its batches reach the sink.
//!
//! Segments are numbered (`seq`, from 0 per stream) and queued in arrival order. A batch
//! is always the front of the queue, so a failed batch is simply retried as the front
//! again later: order is kept without a separate retry list, and memory is bounded by
//! `max_pending` (the oldest segments are dropped, and counted, beyond it).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use zoomhost_sdk::http::Request;
use zoomhost_sdk::serde_json::{self, json};
use zoomhost_sdk::{error, info, warn};

use crate::net::{self, Backoff, Failure, Redactor};
use crate::settings::Settings;

/// Where a segment's text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Zoom's own RTMS transcript.
    Zoom,
    /// The configured speech-to-text service, from the stream's audio.
    Stt,
}

/// One segment as the sink receives it (an element of a batch's `segments`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Position in the stream, from 0; a gap means segments were dropped.
    pub seq: u64,
    /// `"zoom"` or `"stt"`.
    pub origin: Origin,
    /// Zoom user id of the speaker (0: the mixed stream).
    pub speaker_id: u32,
    /// Speaker display name, as Zoom gave it.
    pub speaker_name: String,
    /// The text.
    pub text: String,
    /// Start, milliseconds since the Unix epoch.
    pub start_ms: u64,
    /// End, milliseconds since the Unix epoch, when known.
    pub end_ms: Option<u64>,
    /// Language code, when known.
    pub language: Option<String>,
}

/// A segment before the outbox gives it its `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSegment {
    /// See [`Segment::origin`].
    pub origin: Origin,
    /// See [`Segment::speaker_id`].
    pub speaker_id: u32,
    /// See [`Segment::speaker_name`].
    pub speaker_name: String,
    /// See [`Segment::text`].
    pub text: String,
    /// See [`Segment::start_ms`].
    pub start_ms: u64,
    /// See [`Segment::end_ms`].
    pub end_ms: Option<u64>,
    /// See [`Segment::language`].
    pub language: Option<String>,
}

/// Which stream a batch belongs to; repeated in every batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamId {
    /// Meeting (webinar, session, engagement) id.
    pub meeting_id: String,
    /// RTMS stream id.
    pub stream_id: String,
    /// `meeting`, `webinar`, `video-sdk` or `contact-center`.
    pub session_kind: String,
}

/// Counters of one outbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxStats {
    /// Segments the sink accepted.
    pub sent: u64,
    /// Batches the sink accepted.
    pub batches: u64,
    /// Segments dropped because `max_pending` was reached.
    pub dropped: u64,
    /// Segments in batches the sink refused for good (4xx).
    pub rejected: u64,
}

#[derive(Debug, Clone)]
struct Queued {
    segment: Segment,
    since: Instant,
}

/// What [`Outbox::push`] did beyond queueing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pushed {
    /// Oldest segments dropped to stay within `max_pending`.
    pub dropped: u64,
    /// Whether these are the first drops since the sink last accepted a batch.
    pub first_drops: bool,
}

/// The segments of one stream waiting for the sink.
#[derive(Debug, Clone)]
pub struct Outbox {
    /// The stream.
    pub id: StreamId,
    queue: VecDeque<Queued>,
    next_seq: u64,
    final_sent: bool,
    /// Counters.
    pub stats: OutboxStats,
    /// Drops since the sink last accepted a batch.
    dropped_unreported: u64,
    backoff: Backoff,
}

impl Outbox {
    /// An empty outbox for a stream.
    pub fn new(id: StreamId, settings: &Settings) -> Self {
        Outbox {
            id,
            queue: VecDeque::new(),
            next_seq: 0,
            final_sent: false,
            stats: OutboxStats::default(),
            dropped_unreported: 0,
            backoff: Backoff::new(settings.retry_min, settings.retry_max),
        }
    }

    /// Segments waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether every segment and the final batch were sent (or given up on).
    pub fn is_done(&self) -> bool {
        self.queue.is_empty() && self.final_sent
    }

    /// Numbers and queues a segment, dropping the oldest beyond `max_pending`.
    pub fn push(&mut self, segment: NewSegment, now: Instant, max_pending: usize) -> Pushed {
        let segment = Segment {
            seq: self.next_seq,
            origin: segment.origin,
            speaker_id: segment.speaker_id,
            speaker_name: segment.speaker_name,
            text: segment.text,
            start_ms: segment.start_ms,
            end_ms: segment.end_ms,
            language: segment.language,
        };
        self.next_seq += 1;
        self.queue.push_back(Queued {
            segment,
            since: now,
        });
        self.trim(max_pending)
    }

    /// Drops the oldest segments beyond `max`.
    pub fn trim(&mut self, max: usize) -> Pushed {
        let mut pushed = Pushed::default();
        while self.queue.len() > max {
            self.queue.pop_front();
            pushed.first_drops |= self.dropped_unreported == 0;
            pushed.dropped += 1;
            self.dropped_unreported += 1;
            self.stats.dropped += 1;
        }
        pushed
    }

    /// How many segments to send now, if a batch is due: `batch_max` once that many
    /// wait, everything (up to `batch_max`) once the oldest has waited `batch_wait`, and
    /// when `closing` whatever is left, ending with a final (possibly empty) batch.
    pub fn due(&self, now: Instant, settings: &Settings, closing: bool) -> Option<usize> {
        let len = self.queue.len();
        if closing {
            return (len > 0 || !self.final_sent).then_some(len.min(settings.batch_max));
        }
        if len >= settings.batch_max {
            return Some(settings.batch_max);
        }
        let oldest = self.queue.front()?;
        (now.saturating_duration_since(oldest.since) >= settings.batch_wait).then_some(len)
    }

    /// The JSON body of a batch of the first `n` segments. It is the final batch when
    /// `closing` and it takes everything left.
    pub fn body(&self, n: usize, closing: bool) -> serde_json::Value {
        let segments: Vec<&Segment> = self.queue.iter().take(n).map(|q| &q.segment).collect();
        json!({
            "meeting_id": self.id.meeting_id,
            "stream_id": self.id.stream_id,
            "session_kind": self.id.session_kind,
            "final": closing && n == self.queue.len(),
            "dropped": self.stats.dropped,
            "segments": segments,
        })
    }

    /// The sink accepted the first `n` segments; returns the drops it had not yet
    /// heard about (for a "caught up" log line), if any.
    fn sent(&mut self, n: usize, last: bool) -> Option<u64> {
        self.queue.drain(..n);
        self.stats.sent += n as u64;
        self.stats.batches += 1;
        self.final_sent |= last;
        self.backoff.succeeded();
        (self.dropped_unreported > 0).then(|| std::mem::take(&mut self.dropped_unreported))
    }

    /// The sink refused the first `n` segments for good.
    fn rejected(&mut self, n: usize, last: bool) {
        self.queue.drain(..n);
        self.stats.rejected += n as u64;
        self.final_sent |= last;
        self.backoff.succeeded();
    }

    /// Gives up on the final batch (used when an outbox is discarded as a whole).
    pub fn abandon(&mut self) -> usize {
        let n = self.queue.len();
        self.queue.clear();
        self.final_sent = true;
        n
    }

    /// Drops the `n` oldest segments (to bound memory across outboxes).
    pub fn drop_oldest(&mut self, n: usize) -> usize {
        let n = n.min(self.queue.len());
        self.queue.drain(..n);
        self.stats.dropped += n as u64;
        self.dropped_unreported += n as u64;
        n
    }

    /// A copy that survives the instance (for `snapshot`).
    pub fn save(&self, now: Instant, closed: bool) -> SavedOutbox {
        SavedOutbox {
            id: self.id.clone(),
            next_seq: self.next_seq,
            final_sent: self.final_sent,
            closed,
            stats: self.stats,
            dropped_unreported: self.dropped_unreported,
            segments: self
                .queue
                .iter()
                .map(|q| SavedSegment {
                    waited_ms: u64::try_from(now.saturating_duration_since(q.since).as_millis())
                        .unwrap_or(u64::MAX),
                    segment: q.segment.clone(),
                })
                .collect(),
        }
    }

    /// The outbox saved by [`save`](Outbox::save), its segments as old as they were.
    pub fn restore(saved: SavedOutbox, now: Instant, settings: &Settings) -> (Self, bool) {
        let queue = saved
            .segments
            .into_iter()
            .map(|s| Queued {
                since: now
                    .checked_sub(Duration::from_millis(s.waited_ms))
                    .unwrap_or(now),
                segment: s.segment,
            })
            .collect();
        let outbox = Outbox {
            id: saved.id,
            queue,
            next_seq: saved.next_seq,
            final_sent: saved.final_sent,
            stats: saved.stats,
            dropped_unreported: saved.dropped_unreported,
            backoff: Backoff::new(settings.retry_min, settings.retry_max),
        };
        (outbox, saved.closed)
    }
}

/// An outbox as carried across a hot reload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedOutbox {
    id: StreamId,
    next_seq: u64,
    final_sent: bool,
    closed: bool,
    stats: OutboxStats,
    dropped_unreported: u64,
    segments: Vec<SavedSegment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SavedSegment {
    waited_ms: u64,
    segment: Segment,
}

/// Why [`pump`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Nothing is due.
    Idle,
    /// A batch is due but the last failure's backoff has not passed.
    Backoff,
    /// A batch is due but too little of the call's deadline is left.
    NoTime,
    /// The sink failed; the batch stays queued.
    Failed,
}

/// Sends due batches of `outbox` while the call's deadline allows. `closing` sends
/// everything left, ending with the final batch, and ignores the backoff (a stream's
/// close is its last chance inside its own session).
pub fn pump(
    outbox: &mut Outbox,
    settings: &Settings,
    redact: &Redactor,
    closing: bool,
    ignore_backoff: bool,
) -> Stop {
    loop {
        let now = Instant::now();
        let Some(n) = outbox.due(now, settings, closing) else {
            return Stop::Idle;
        };
        if !ignore_backoff && !outbox.backoff.ready(now) {
            return Stop::Backoff;
        }
        let Some(timeouts) = net::budget(settings) else {
            return Stop::NoTime;
        };
        let last = closing && n == outbox.len();
        let mut request = Request::post(&settings.sink_url)
            .header("user-agent", crate::USER_AGENT)
            .json(&outbox.body(n, closing));
        if let Some(token) = &settings.sink_token {
            request = request.header("authorization", format!("Bearer {}", token.expose()));
        }
        request.timeouts = timeouts;
        let stream = outbox.id.stream_id.clone();
        match net::send(&request, redact) {
            Ok(_) => {
                if let Some(dropped) = outbox.sent(n, last) {
                    info!(
                        "stream {stream}: sink caught up; {dropped} segments were dropped while \
                         it was failing ({} dropped in total)",
                        outbox.stats.dropped
                    );
                }
            }
            Err(Failure::Retry(reason)) => {
                outbox.backoff.failed(Instant::now());
                warn!(
                    "stream {stream}: sink POST of {n} segments failed, kept for retry \
                     ({} pending): {reason}",
                    outbox.len()
                );
                return Stop::Failed;
            }
            Err(Failure::Reject(reason)) => {
                outbox.rejected(n, last);
                error!(
                    "stream {stream}: sink refused a batch of {n} segments, which are \
                     discarded: {reason}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(batch_max: usize, batch_ms: u64) -> Settings {
        let mut s =
            crate::settings::load(|k| (k == "sink_url").then(|| "http://s/".into())).unwrap();
        s.batch_max = batch_max;
        s.batch_wait = Duration::from_millis(batch_ms);
        s
    }

    fn seg(text: &str) -> NewSegment {
        NewSegment {
            origin: Origin::Zoom,
            speaker_id: 7,
            speaker_name: "Ada".into(),
            text: text.into(),
            start_ms: 1,
            end_ms: None,
            language: None,
        }
    }

    fn outbox(s: &Settings) -> Outbox {
        Outbox::new(
            StreamId {
                meeting_id: "m".into(),
                stream_id: "s".into(),
                session_kind: "meeting".into(),
            },
            s,
        )
    }

    #[test]
    fn batches_by_size_age_and_close() {
        let s = settings(3, 1000);
        let mut o = outbox(&s);
        let t0 = Instant::now();
        assert_eq!(o.due(t0, &s, false), None);
        o.push(seg("a"), t0, 100);
        o.push(seg("b"), t0, 100);
        assert_eq!(o.due(t0, &s, false), None);
        assert_eq!(o.due(t0 + Duration::from_millis(1000), &s, false), Some(2));
        o.push(seg("c"), t0, 100);
        o.push(seg("d"), t0, 100);
        assert_eq!(o.due(t0, &s, false), Some(3));
        assert_eq!(o.sent(3, false), None);
        assert_eq!(o.due(t0, &s, true), Some(1));
        let body = o.body(1, true);
        assert_eq!(body["final"], true);
        assert_eq!(body["segments"][0]["seq"], 3);
        assert_eq!(body["segments"][0]["origin"], "zoom");
        assert_eq!(body["segments"][0]["end_ms"], serde_json::Value::Null);
        o.sent(1, true);
        assert!(o.is_done());
        assert_eq!(o.due(t0, &s, true), None);
    }

    #[test]
    fn empty_stream_still_gets_a_final_batch() {
        let s = settings(3, 1000);
        let o = outbox(&s);
        assert_eq!(o.due(Instant::now(), &s, true), Some(0));
        assert_eq!(o.body(0, true)["final"], true);
    }

    #[test]
    fn bounded_with_counted_drops_and_save_restore() {
        let s = settings(2, 1000);
        let mut o = outbox(&s);
        let t0 = Instant::now();
        let mut drops = Vec::new();
        for i in 0..6 {
            drops.push(o.push(seg(&i.to_string()), t0, 4));
        }
        assert_eq!(
            drops[4],
            Pushed {
                dropped: 1,
                first_drops: true
            }
        );
        assert_eq!(
            drops[5],
            Pushed {
                dropped: 1,
                first_drops: false
            }
        );
        assert_eq!(o.stats.dropped, 2);
        assert_eq!(o.body(4, false)["segments"][0]["seq"], 2);
        let (back, closed) = Outbox::restore(o.save(t0, true), t0, &s);
        assert!(closed);
        assert_eq!(back.body(4, false), o.body(4, false));
        let mut back = back;
        assert_eq!(back.sent(2, false), Some(2));
        assert_eq!(back.sent(2, false), None);
    }
}
