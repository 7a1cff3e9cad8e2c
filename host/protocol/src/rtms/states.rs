//! Stream states, session states and stop reasons.
//!
//! A stream's state (`STREAM_STATE_UPDATE`, 8: `state` and `reason`) follows its media:
//! active once the client is ready, interrupted while a socket is missing, paused and
//! resumed, then terminating and terminated at the end, which is what ends a stream for
//! the client. The session's state (`SESSION_STATE_UPDATE`, 9: `state` and
//! `stop_reason`) follows the meeting's RTMS session; "stopped" alone does not end the
//! stream. Both carry a stop reason when they report an end or an interruption; the same
//! numbers are the `stop_reason` of `*.rtms_stopped` events.

/// `state` values of `STREAM_STATE_UPDATE` (and of `STREAM_STATE_RESP`).
pub mod stream_state {
    /// Not started yet.
    pub const INACTIVE: u32 = 0;
    /// Media is flowing.
    pub const ACTIVE: u32 = 1;
    /// A socket was lost; the stream may still be resumed.
    pub const INTERRUPTED: u32 = 2;
    /// The stream is ending.
    pub const TERMINATING: u32 = 3;
    /// The stream ended: the client stops.
    pub const TERMINATED: u32 = 4;
    /// Media paused.
    pub const PAUSED: u32 = 5;
    /// Media resumed after a pause.
    pub const RESUMED: u32 = 6;
}

/// `state` values of `SESSION_STATE_UPDATE` (and of `SESSION_STATE_RESP`).
pub mod session_state {
    /// Not started yet.
    pub const INACTIVE: u32 = 0;
    /// Started.
    pub const STARTED: u32 = 2;
    /// Paused.
    pub const PAUSED: u32 = 3;
    /// Stopped.
    pub const STOPPED: u32 = 5;
}

/// Why a stream stopped or was interrupted: `reason` of stream state updates,
/// `stop_reason` of session state updates and of `*.rtms_stopped`.
pub mod stop_reason {
    /// The host stopped the stream.
    pub const HOST_TRIGGERED: u32 = 1;
    /// A user stopped the stream.
    pub const USER_TRIGGERED: u32 = 2;
    /// The user who started it left.
    pub const USER_LEFT: u32 = 3;
    /// The user who started it was removed.
    pub const USER_EJECTED: u32 = 4;
    /// The host disabled the app.
    pub const HOST_DISABLED_APP: u32 = 5;
    /// The meeting ended.
    pub const MEETING_ENDED: u32 = 6;
    /// The stream was canceled.
    pub const STREAM_CANCELED: u32 = 7;
    /// The stream was revoked.
    pub const STREAM_REVOKED: u32 = 8;
    /// Every app was disabled.
    pub const ALL_APPS_DISABLED: u32 = 9;
    /// An internal error on Zoom's side.
    pub const INTERNAL_EXCEPTION: u32 = 10;
    /// A connection timed out.
    pub const CONNECTION_TIMEOUT: u32 = 11;
    /// The first of the connection-interrupted reasons (12 to 16).
    pub const CONNECTION_INTERRUPTED_FIRST: u32 = 12;
    /// The last of the connection-interrupted reasons (12 to 16).
    pub const CONNECTION_INTERRUPTED_LAST: u32 = 16;
    /// Exit signal.
    pub const EXIT_SIGNAL: u32 = 17;
    /// Authentication failed.
    pub const AUTHENTICATION_FAILURE: u32 = 18;
    /// An interrupted stream was not resumed in time.
    pub const AWAIT_RECONNECTION_TIMEOUT: u32 = 19;
    /// The client asked to close the stream (`STREAM_CLOSE_REQ`).
    pub const RECEIVER_REQUEST_CLOSE: u32 = 20;
    /// A socket stopped answering keep-alives.
    pub const KEEP_ALIVE_TIMEOUT: u32 = 24;
    /// Stopped through the API.
    pub const MANUAL_API: u32 = 25;
    /// Streaming is not supported for this meeting.
    pub const STREAMING_NOT_SUPPORTED: u32 = 26;

    /// The name of a stop reason, for logs and reports ("unknown" for numbers it does not
    /// know).
    pub fn name(reason: i64) -> &'static str {
        match reason {
            1 => "host triggered",
            2 => "user triggered",
            3 => "user left",
            4 => "user ejected",
            5 => "host disabled app",
            6 => "meeting ended",
            7 => "stream canceled",
            8 => "stream revoked",
            9 => "all apps disabled",
            10 => "internal exception",
            11 => "connection timeout",
            12..=16 => "connection interrupted",
            17 => "exit signal",
            18 => "authentication failure",
            19 => "await-reconnection timeout",
            20 => "receiver request close",
            24 => "keep-alive timeout",
            25 => "manual API",
            26 => "streaming not supported",
            _ => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_reasons_have_names() {
        assert_eq!(
            stop_reason::name(stop_reason::MEETING_ENDED.into()),
            "meeting ended"
        );
        assert_eq!(
            stop_reason::name(stop_reason::KEEP_ALIVE_TIMEOUT.into()),
            "keep-alive timeout"
        );
        for r in
            stop_reason::CONNECTION_INTERRUPTED_FIRST..=stop_reason::CONNECTION_INTERRUPTED_LAST
        {
            assert_eq!(stop_reason::name(r.into()), "connection interrupted");
        }
        assert_eq!(stop_reason::name(0), "unknown");
        assert_eq!(stop_reason::name(-1), "unknown");
    }
}
