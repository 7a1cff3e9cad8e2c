//! Zoom's wire formats as zoomhost speaks them, with no I/O: used by the client side
//! (`zoomhost`'s `zoom` module) and by the simulator (`zoomhost-sim`), so that both sign
//! and check exactly the same way.
//!
//! - [`Secret`]: a string that never prints (client secrets, webhook secret tokens,
//!   access tokens).
//! - [`webhook`]: the `x-zm-signature` scheme (`v0=` hex HMAC-SHA256 over
//!   `v0:{timestamp}:{raw body}`, keyed by the webhook secret token), its constant-time
//!   check, and the `endpoint.url_validation` answer.
//! - [`rtms`]: the handshake signature (hex HMAC-SHA256 keyed by the client secret over
//!   `{client_id},{meeting_uuid},{rtms_stream_id}`).
//!
//! The rest of the RTMS message set and the event-WebSocket envelopes move here from the
//! client and the simulator next (see ARCHITECTURE.md).

#![warn(missing_docs)]

mod mac;
pub mod rtms;
mod secret;
pub mod webhook;

pub use secret::Secret;
