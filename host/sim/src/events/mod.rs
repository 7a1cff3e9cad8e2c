//! Simulator: the event WebSocket, server side (see the event WebSocket notes in the `zoomhost-zoom` crate docs).
//!
//! [`EventSim`] listens on `127.0.0.1:0` and speaks Zoom's envelope: it checks the
//! `access_token` query parameter with a [`TokenAuthority`] (the [`OAuthSim`], or any
//! closure), answers `build_connection` (success, or failure with `"token is empty"` /
//! `"Invalid Token"` and a close), replies to heartbeats with `content:"live"`, drops
//! clients that stay silent too long, and closes the older connection when a new one for
//! the same subscription arrives. Events are pushed as `message` envelopes whose `content`
//! is the JSON *string* of `{event, event_ts, payload}`.
//!
//! Faults: abrupt TCP drop (no close frame), close with a code, stall (neither read nor
//! write for a while: heartbeats go unanswered), refusing connections, token invalidation,
//! closing a connection when its token expires ([`TOKEN_EXPIRED_CLOSE`], at the real
//! expiry or forced by [`EventSim::expire_token`]), short token lifetimes and OAuth outages
//! by count or for a while (through the [`TokenAuthority`]). [`EventChaos`] injects them on
//! a cycle and [`EventSim::steady_stream`] keeps events flowing meanwhile.
//!
//! Records: every event written to a connected client ([`EventSim::sent`], with its
//! payload tag and its content-derived id), so tests can check exactly-once delivery;
//! events pushed while no client was connected ([`EventSim::missed`]): Zoom does not
//! replay them either; every accepted connection with the token it used and why it ended
//! ([`EventSim::connection_log`]), so a test can tell a server close from a client's own
//! reconnect. With [`EventSim::mirror_to_webhook`] every event is also posted as a
//! webhook (the same `{event, event_ts, payload}` the WebSocket's `content` carries, as
//! Zoom sends to an app subscribed both ways), recorded in [`EventSim::webhooked`].
//!
//! Scenarios ([`Scenario`], TOML or JSON) describe a meeting timeline with realistic
//! payloads ([`MeetingGen`]) and fault steps; see `host/samples/scenario.toml`. When
//! `tag_ids` is on (the default) every payload carries a top-level string `"id"`
//! (`evt-0001`, ...) that the test recorder plugin reports. Real Zoom payloads have no
//! such field.
//!
//! With an [`RtmsSim`] attached ([`Scenario::run_with`]), `rtms_start` steps register a
//! media stream for the meeting and announce it with `meeting.rtms_started` (its
//! `server_urls` is the simulator's signaling URL), `rtms_wait` waits for the client, and
//! `rtms_stop` runs the stream's stop sequence and pushes `meeting.rtms_stopped`; see
//! `host/samples/rtms-meeting.toml`.

mod chaos;
mod payloads;
mod scenario;
mod server;
#[cfg(test)]
mod tests;

use crate::util::random_token;
pub use chaos::*;
pub use payloads::MeetingGen;
pub use scenario::*;
pub use server::*;
