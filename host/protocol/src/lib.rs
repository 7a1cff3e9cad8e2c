//! Zoom's wire formats as zoomhost speaks them, with no I/O: used by the client side
//! (`zoomhost-zoom`) and by the simulator (`zoomhost-sim`), so that both sign, check,
//! number and shape messages exactly the same way.
//!
//! - [`Secret`]: a string that never prints (client secrets, webhook secret tokens,
//!   access tokens).
//! - [`webhook`]: the `x-zm-signature` scheme (`v0=` hex HMAC-SHA256 over
//!   `v0:{timestamp}:{raw body}`, keyed by the webhook secret token), its constant-time
//!   check, and the `endpoint.url_validation` answer.
//! - [`rtms`]: the RTMS message set: `msg_type` numbers, stream and session states, stop
//!   reasons, status codes, media types and their parameters, the handshake signature
//!   (hex HMAC-SHA256 keyed by the client secret over
//!   `{client_id},{meeting_uuid},{rtms_stream_id}`), and the messages both sides build or
//!   read.
//!
//! - [`event_id`]: the content-derived identity of a Zoom event (name, `event_ts`,
//!   canonical payload), the same whichever source delivered it.
//! - [`event_socket`]: the event WebSocket's envelopes (`build_connection`, `heartbeat`,
//!   `message` with the event as a JSON string), built by the simulator and read by the
//!   client.
//! - [`fnv`]: 64-bit FNV-1a, a hash that is the same on every build and machine (a
//!   meeting's cluster partition, the RTMS dedupe's text digests).

#![warn(missing_docs)]

pub mod event_id;
pub mod event_socket;
pub mod fnv;
mod mac;
pub mod rtms;
mod secret;
pub mod webhook;

pub use event_id::{event_id, event_id_of_text};
pub use secret::Secret;
