//! RTMS (Realtime Media Streams): the numbers and message shapes that the client
//! (`zoomhost-zoom`) and the simulated servers (`zoomhost-sim`) share.
//!
//! A stream has one signaling WebSocket and one or more media WebSockets. Every message on
//! any of them is a JSON object with an integer `msg_type` ([`msg`]), in a text or a
//! binary frame. A stream goes through these steps:
//!
//! 1. Signaling handshake ([`handshake`]): the client sends 1 with `protocol_version` 1, a
//!    fresh `sequence`, the session id (under the product's key or `meeting_uuid`,
//!    [`product`]), `rtms_stream_id` and the [`signature`]; the server
//!    answers 2 with a `status_code` ([`status`], 0 is success) and the media servers'
//!    URLs, one per media type key and `all` ([`media`]).
//! 2. Media handshakes: on each media socket the client sends 3 with the same fields plus
//!    `media_type` (a bitmask, [`media::bit`]) and the `media_params` it asks for; the
//!    server answers 4 with the effective `media_params`.
//! 3. On signaling the client subscribes to events (5) and sends `CLIENT_READY_ACK` (7)
//!    ([`control`]). Media data (14 to 18) then flows on the media sockets, while
//!    signaling carries event updates (6, [`msg::event_type`]), stream states (8,
//!    [`states::stream_state`]) and session states (9, [`states::session_state`]).
//! 4. Every socket gets keep-alive requests (12), answered at once with 13 echoing the
//!    request's `sequence` and `timestamp` ([`control`]).
//! 5. The stream ends with stream state TERMINATED and a stop reason
//!    ([`states::stop_reason`]), then close frames. The client may ask for the end with
//!    `STREAM_CLOSE_REQ` (21, answered by 22, then TERMINATED with reason 20).
//!
//! Zoom's failure contract: a lost signaling socket takes media with it and Zoom sends
//! `*.rtms_interrupted` (the client re-handshakes everything within about 60 s); a lost
//! media socket is announced on signaling (event 7, or stream state INTERRUPTED with
//! reason 14; the client re-handshakes that socket within 65 s and acknowledges again
//! with 7); a failed server is announced by `*.rtms_started` again with new
//! `server_urls` and a newer `event_ts`; stop reasons 10 to 19 and 24 are connection
//! failures. A refused handshake is retried only for the duplicates 8 and 16
//! ([`status::retry`]).
//!
//! Transcript languages travel as Zoom's language numbers, both in the transcript params
//! (`src_language`) and in transcript data (`language`); [`language`] holds the table.
//!
//! Only numbers and shapes live here. Reading sockets, tolerating loose input and deciding
//! what each message means for a stream belong to the two sides.

pub mod control;
pub mod handshake;
pub mod language;
pub mod media;
pub mod msg;
pub mod product;
pub mod states;
pub mod status;

pub use handshake::signature;
