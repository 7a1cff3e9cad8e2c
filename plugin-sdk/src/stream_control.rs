//! Requests on the RTMS streams a plugin is given: close a stream, subscribe a
//! participant's individual video.
//!
//! The operator must grant them to the plugin (`stream_control = true` in its
//! `[plugins.NAME]` section of the host config); without the grant every call returns an
//! error naming it (and the host counts and logs the denial). A call only queues the
//! request with the host's RTMS client and returns at once.
//!
//! One RTMS stream feeds every plugin that subscribes to it, so a request acts for all of
//! them: [`close_stream`] closes the stream for every plugin (each sees its
//! [`MediaSession`](crate::MediaSession) dropped), and [`subscribe_video`] sets the
//! stream's one video subscription, replacing the previous one whichever plugin made it.
//!
//! ```no_run
//! # fn demo(info: &zoomhost_sdk::StreamInfo) -> Result<(), String> {
//! // Follow participant 16778240's camera on this stream.
//! zoomhost_sdk::stream_control::subscribe_video(&info.stream_id, 16778240, true)?;
//! // Done with the meeting: end the stream (for every plugin).
//! zoomhost_sdk::stream_control::close_stream(&info.stream_id)?;
//! # Ok(())
//! # }
//! ```

use crate::bindings::zoomhost::plugin::stream_control as wit;

/// Asks Zoom to close stream `stream_id` (a [`StreamInfo::stream_id`](crate::StreamInfo)).
///
/// Errors (as text): the plugin is not granted `stream_control`, the host has no RTMS
/// client, or no such stream is open.
pub fn close_stream(stream_id: &str) -> Result<(), String> {
    wit::close_stream(stream_id)
}

/// Subscribes stream `stream_id`'s individual video to participant `user_id`
/// (`subscribe` true), replacing any previous subscription on that stream, or ends the
/// subscription (`false`).
///
/// Errors (as text): not granted, no RTMS client, no such open stream, or the stream
/// cannot do it now (not connected, or carrying no video).
pub fn subscribe_video(stream_id: &str, user_id: u32, subscribe: bool) -> Result<(), String> {
    wit::subscribe_video(stream_id, user_id, subscribe)
}
