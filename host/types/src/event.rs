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
    /// The event's identity, derived from its content (name, `event_ts` and payload; see
    /// `zoomhost_protocol::event_id`), so the same Zoom event has the same id whichever
    /// source delivered it, and however often (Zoom retries webhooks).
    pub id: String,
    /// The event name, e.g. `meeting.started`.
    pub name: String,
    /// Zoom's `event_ts`, in milliseconds.
    pub timestamp: u64,
    /// The event's `payload` object, as JSON text.
    pub payload: String,
    /// Where it came from.
    pub source: EventSource,
}
