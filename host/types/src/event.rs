//! Zoom events.

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventSource {
    /// Zoom's event WebSocket.
    Websocket,
    /// A Zoom webhook.
    Webhook,
    /// `zoomhost replay`.
    Replay,
    /// The local simulator.
    Simulator,
}

/// One Zoom event, in the webhook-body shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event name, e.g. `meeting.started`.
    pub name: String,
    /// Zoom's `event_ts`, in milliseconds.
    pub timestamp: u64,
    /// The event's `payload` object, as JSON text.
    pub payload: String,
    /// Where it came from.
    pub source: EventSource,
}
