//! Turns inputs into deliveries: event names are matched against each plugin's patterns,
//! and each RTMS stream opens a media session in every plugin that subscribed to one of
//! its media kinds. A plugin with several instances gets each delivery in the instance
//! its meeting goes to ([`crate::shard`]). The router never waits: see
//! [`crate::mailbox`] for what happens when a plugin is congested.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use zoomhost_types::{
    AudioFrame, ChatMessage, Event, InputSink, Participant, StreamInfo, StreamSink, StreamState,
    TranscriptSegment, VideoFrame,
};

use crate::bindings::types as wit;
use crate::bindings::types::MediaKind;
use crate::mailbox::{Completion, Mailbox, MediaItem, Ticket};
use crate::shard::ShardKey;

/// One event-name pattern: exact, `prefix.*`, or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventPattern {
    /// Every event.
    Any,
    /// Names starting with this (including the trailing dot).
    Prefix(String),
    /// Exactly this name.
    Exact(String),
}

impl EventPattern {
    /// Parses a pattern; `*` is allowed only alone or as a final `.*`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "*" {
            return Ok(Self::Any);
        }
        if let Some(prefix) = text.strip_suffix(".*") {
            if !prefix.is_empty() && !prefix.contains('*') {
                return Ok(Self::Prefix(format!("{prefix}.")));
            }
        } else if !text.is_empty() && !text.contains('*') {
            return Ok(Self::Exact(text.to_string()));
        }
        Err(format!(
            "event pattern {text:?} is not supported: use an exact name, `prefix.*` or `*`"
        ))
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Prefix(p) => name.starts_with(p.as_str()),
            Self::Exact(e) => name == e,
        }
    }
}

/// Where one plugin's deliveries go and what it wants.
#[derive(Clone)]
pub struct Route {
    /// Plugin name.
    pub plugin: Arc<str>,
    /// Event patterns.
    pub events: Vec<EventPattern>,
    /// Media kinds.
    pub media: Vec<MediaKind>,
    /// The mailboxes of the plugin's instances (one or more): a delivery goes to the one
    /// its meeting hashes to (see [`crate::shard`]).
    pub mailboxes: Vec<Arc<Mailbox>>,
}

impl Route {
    /// The mailbox of the instance `key` goes to (`None` for a route with no mailbox).
    fn mailbox(&self, key: impl FnOnce() -> ShardKey) -> Option<&Arc<Mailbox>> {
        match self.mailboxes.len() {
            0 => None,
            1 => self.mailboxes.first(),
            n => self.mailboxes.get(key().instance(n)),
        }
    }
}

/// Which routes each event name reaches, without testing every pattern: exact names and
/// prefixes are looked up, so the cost per event grows with the dots in its name, not
/// with the number of patterns plugins declared.
#[derive(Debug, Default)]
struct PatternIndex {
    /// Routes subscribed to `*`.
    any: Vec<usize>,
    /// Exact name → routes.
    exact: HashMap<String, Vec<usize>>,
    /// Prefix, with its trailing dot → routes.
    prefix: HashMap<String, Vec<usize>>,
}

impl PatternIndex {
    fn build(routes: &[Route]) -> Self {
        let mut index = Self::default();
        for (i, route) in routes.iter().enumerate() {
            for pattern in &route.events {
                let slot = match pattern {
                    EventPattern::Any => &mut index.any,
                    EventPattern::Exact(name) => index.exact.entry(name.clone()).or_default(),
                    EventPattern::Prefix(p) => index.prefix.entry(p.clone()).or_default(),
                };
                if slot.last() != Some(&i) {
                    slot.push(i);
                }
            }
        }
        index
    }

    /// The routes `name` reaches, in route order, each once.
    fn matching(&self, name: &str) -> Vec<usize> {
        let mut hits: Vec<usize> = self.any.clone();
        if let Some(routes) = self.exact.get(name) {
            hits.extend(routes);
        }
        if !self.prefix.is_empty() {
            for (at, _) in name.match_indices('.') {
                if let Some(routes) = self.prefix.get(&name[..=at]) {
                    hits.extend(routes);
                }
            }
        }
        hits.sort_unstable();
        hits.dedup();
        hits
    }
}

/// The routes with their index; replaced as a whole when plugins come and go.
#[derive(Default)]
struct Table {
    routes: Vec<Route>,
    index: PatternIndex,
}

impl Table {
    fn new(routes: Vec<Route>) -> Self {
        let index = PatternIndex::build(&routes);
        Self { routes, index }
    }
}

/// The router: a routing table swapped atomically when plugins come and go.
#[derive(Default)]
pub struct Router {
    table: RwLock<Arc<Table>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self
            .table()
            .routes
            .iter()
            .map(|r| r.plugin.clone())
            .collect();
        f.debug_struct("Router").field("plugins", &names).finish()
    }
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    fn table(&self) -> Arc<Table> {
        self.table
            .read()
            .map(|t| t.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Adds or replaces a plugin's route.
    pub fn set_route(&self, route: Route) {
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
        let mut routes: Vec<Route> = table
            .routes
            .iter()
            .filter(|r| r.plugin != route.plugin)
            .cloned()
            .collect();
        routes.push(route);
        *table = Arc::new(Table::new(routes));
    }

    /// Removes a plugin's route.
    pub fn remove_route(&self, plugin: &str) {
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
        let routes: Vec<Route> = table
            .routes
            .iter()
            .filter(|r| &*r.plugin != plugin)
            .cloned()
            .collect();
        *table = Arc::new(Table::new(routes));
    }

    /// The longest mailbox right now (for inputs that can slow down, like replay).
    pub fn busiest_queue(&self) -> usize {
        self.table()
            .routes
            .iter()
            .flat_map(|r| r.mailboxes.iter().map(|m| m.len()))
            .max()
            .unwrap_or(0)
    }

    /// Queues an event for every plugin whose patterns match (to the instance its
    /// meeting goes to); returns the names of the plugins it was queued for.
    pub fn dispatch_event(&self, event: Event) -> Vec<Arc<str>> {
        self.dispatch(event, None)
    }

    /// [`Router::dispatch_event`], returning a [`Completion`] that resolves once every
    /// plugin the event was queued for has finished its call for it (returned, failed,
    /// trapped or timed out) or the mailbox policy dropped it; at once if no plugin
    /// subscribes. A cluster worker acknowledges the event's message then.
    pub fn dispatch_event_tracked(&self, event: Event) -> Completion {
        let (mut completion, ticket) = Completion::new();
        let queued = self.dispatch(event, Some(ticket));
        completion.set_queued(queued);
        completion
    }

    fn dispatch(&self, event: Event, ticket: Option<Ticket>) -> Vec<Arc<str>> {
        let event = Arc::new(wit::Event::from(event));
        let table = self.table();
        let mut queued = Vec::new();
        // The payload is read for its meeting once, and only if a plugin is sharded.
        let mut key = None;
        for i in table.index.matching(&event.name) {
            let route = &table.routes[i];
            let mailbox = route
                .mailbox(|| *key.get_or_insert_with(|| ShardKey::of_event_payload(&event.payload)));
            if mailbox.is_some_and(|m| m.push_tracked_event(event.clone(), ticket.clone())) {
                queued.push(route.plugin.clone());
            }
        }
        queued
    }

    /// Opens a stream: a media session in every plugin subscribed to one of `info.media`.
    /// Each plugin's session is told only the kinds it gets. The stream is closed in the
    /// plugins when the handle is closed or dropped.
    pub fn open_stream(&self, info: StreamInfo) -> MediaStream {
        let key = ShardKey::of_meeting(&info.meeting_id);
        let info = wit::StreamInfo::from(info);
        let id: Arc<str> = Arc::from(info.stream_id.as_str());
        let mut targets = Vec::new();
        for route in self.table().routes.iter() {
            let kinds: Vec<MediaKind> = info
                .media
                .iter()
                .copied()
                .filter(|k| route.media.contains(k))
                .collect();
            if kinds.is_empty() {
                continue;
            }
            let Some(mailbox) = route.mailbox(|| key) else {
                continue;
            };
            let per_plugin = wit::StreamInfo {
                media: kinds.clone(),
                ..info.clone()
            };
            if mailbox.push_media(id.clone(), MediaItem::Open(Arc::new(per_plugin))) {
                targets.push(Target {
                    plugin: route.plugin.clone(),
                    kinds: kinds.iter().fold(0, |m, k| m | kind_bit(*k)),
                    mailbox: mailbox.clone(),
                });
            }
        }
        MediaStream {
            id,
            wanted: targets.iter().fold(0, |m, t| m | t.kinds),
            targets,
            closed: false,
        }
    }
}

/// A media kind's bit in a kind set (`u8`): asked on every frame, so a set is one byte
/// rather than a list.
fn kind_bit(kind: MediaKind) -> u8 {
    1 << (kind as u8)
}

struct Target {
    plugin: Arc<str>,
    /// The kinds this plugin's session gets ([`kind_bit`]s).
    kinds: u8,
    mailbox: Arc<Mailbox>,
}

/// An open stream's handle: frames pushed here reach the plugins' sessions in order.
pub struct MediaStream {
    id: Arc<str>,
    /// The kinds any target gets ([`kind_bit`]s).
    wanted: u8,
    targets: Vec<Target>,
    closed: bool,
}

impl std::fmt::Debug for MediaStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.targets.iter().map(|t| t.plugin.clone()).collect();
        f.debug_struct("MediaStream")
            .field("id", &self.id)
            .field("plugins", &names)
            .finish()
    }
}

impl MediaStream {
    /// The stream id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether any plugin's session gets `kind` (frames nobody wants need not be decoded).
    pub fn wants(&self, kind: zoomhost_types::MediaKind) -> bool {
        self.wanted & kind_bit(MediaKind::from(kind)) != 0
    }

    /// Plugins with a session for this stream.
    pub fn plugins(&self) -> Vec<Arc<str>> {
        self.targets.iter().map(|t| t.plugin.clone()).collect()
    }

    fn push(&self, kind: Option<MediaKind>, item: MediaItem) {
        for t in &self.targets {
            if kind.is_none_or(|k| t.kinds & kind_bit(k) != 0) {
                t.mailbox.push_media(self.id.clone(), item.clone());
            }
        }
    }

    /// An audio frame.
    pub fn audio(&self, frame: AudioFrame) {
        self.push(
            Some(MediaKind::Audio),
            MediaItem::Audio(Arc::new(frame.into())),
        );
    }
    /// A transcript segment.
    pub fn transcript(&self, segment: TranscriptSegment) {
        self.push(
            Some(MediaKind::Transcript),
            MediaItem::Transcript(Arc::new(segment.into())),
        );
    }
    /// A video frame.
    pub fn video(&self, frame: VideoFrame) {
        self.push(
            Some(MediaKind::Video),
            MediaItem::Video(Arc::new(frame.into())),
        );
    }
    /// A screen-share frame.
    pub fn share(&self, frame: VideoFrame) {
        self.push(
            Some(MediaKind::Share),
            MediaItem::Share(Arc::new(frame.into())),
        );
    }
    /// A chat message.
    pub fn chat(&self, message: ChatMessage) {
        self.push(
            Some(MediaKind::Chat),
            MediaItem::Chat(Arc::new(message.into())),
        );
    }
    /// A participant joined.
    pub fn participant_join(&self, who: Participant) {
        self.push(None, MediaItem::Join(who.into()));
    }
    /// A participant left.
    pub fn participant_leave(&self, who: Participant) {
        self.push(None, MediaItem::Leave(who.into()));
    }
    /// The active speaker changed.
    pub fn active_speaker(&self, who: Participant) {
        self.push(None, MediaItem::Speaker(who.into()));
    }
    /// The stream changed state.
    pub fn state(&self, state: StreamState) {
        self.push(None, MediaItem::State(state.into()));
    }

    /// Ends the stream in every plugin.
    pub fn close(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        if !self.closed {
            self.closed = true;
            self.push(None, MediaItem::Close);
        }
    }
}

impl InputSink for Router {
    fn event(&self, event: Event) -> usize {
        self.dispatch_event(event).len()
    }

    fn open_stream(&self, info: StreamInfo) -> Box<dyn StreamSink> {
        Box::new(Router::open_stream(self, info))
    }
}

impl StreamSink for MediaStream {
    fn id(&self) -> &str {
        MediaStream::id(self)
    }
    fn wants(&self, kind: zoomhost_types::MediaKind) -> bool {
        MediaStream::wants(self, kind)
    }
    fn consumers(&self) -> Vec<Arc<str>> {
        self.plugins()
    }
    fn audio(&self, frame: AudioFrame) {
        MediaStream::audio(self, frame)
    }
    fn transcript(&self, segment: TranscriptSegment) {
        MediaStream::transcript(self, segment)
    }
    fn video(&self, frame: VideoFrame) {
        MediaStream::video(self, frame)
    }
    fn share(&self, frame: VideoFrame) {
        MediaStream::share(self, frame)
    }
    fn chat(&self, message: ChatMessage) {
        MediaStream::chat(self, message)
    }
    fn participant_join(&self, who: Participant) {
        MediaStream::participant_join(self, who)
    }
    fn participant_leave(&self, who: Participant) {
        MediaStream::participant_leave(self, who)
    }
    fn active_speaker(&self, who: Participant) {
        MediaStream::active_speaker(self, who)
    }
    fn state(&self, state: StreamState) {
        MediaStream::state(self, state)
    }
    fn close(self: Box<Self>) {
        MediaStream::close(*self)
    }
}

impl Drop for MediaStream {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let p = |s| EventPattern::parse(s).unwrap();
        assert!(p("*").matches("meeting.started"));
        assert!(p("meeting.*").matches("meeting.started"));
        assert!(!p("meeting.*").matches("meetings.started"));
        assert!(!p("meeting.*").matches("recording.completed"));
        assert!(p("recording.completed").matches("recording.completed"));
        assert!(!p("recording.completed").matches("recording.completed2"));
        assert!(EventPattern::parse("mee*ting").is_err());
        assert!(EventPattern::parse("").is_err());
        assert!(EventPattern::parse(".*").is_err());
    }

    fn route(name: &str, patterns: &[&str]) -> Route {
        use crate::mailbox::MailboxLimits;
        Route {
            plugin: Arc::from(name),
            events: patterns
                .iter()
                .map(|p| EventPattern::parse(p).unwrap())
                .collect(),
            media: Vec::new(),
            mailboxes: vec![Arc::new(Mailbox::new(
                MailboxLimits {
                    capacity: 8,
                    event_wait: std::time::Duration::from_millis(1),
                    audio_frames: 8,
                },
                Default::default(),
            ))],
        }
    }

    #[test]
    fn the_index_finds_what_scanning_every_pattern_finds() {
        let routes = vec![
            route("a", &["meeting.*", "meeting.started"]),
            route("b", &["recording.completed"]),
            route("c", &["*"]),
            route("d", &["meeting.participant.*", "webinar.*"]),
        ];
        let index = PatternIndex::build(&routes);
        for name in [
            "meeting.started",
            "meeting.participant.joined",
            "meeting",
            "recording.completed",
            "recording.completed.x",
            "webinar.ended",
            "",
            "x.y.z",
        ] {
            let scanned: Vec<usize> = routes
                .iter()
                .enumerate()
                .filter(|(_, r)| r.events.iter().any(|p| p.matches(name)))
                .map(|(i, _)| i)
                .collect();
            assert_eq!(index.matching(name), scanned, "{name}");
        }
    }
}
