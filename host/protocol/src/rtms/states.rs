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
    /// Initializing.
    pub const INITIALIZE: u32 = 1;
    /// Started.
    pub const STARTED: u32 = 2;
    /// Paused.
    pub const PAUSED: u32 = 3;
    /// Resumed after a pause.
    pub const RESUMED: u32 = 4;
    /// Stopped.
    pub const STOPPED: u32 = 5;
}

/// Why a stream stopped or was interrupted: `reason` of stream state updates,
/// `stop_reason` of session state updates and of `*.rtms_stopped`.
///
/// 10 to 19 and 24 are connection failures ([`stop_reason::is_connection_failure`]): the
/// stream is over and only a new stream (a new `rtms_started`) brings media back. 13 and
/// 14 are also the `reason` of an INTERRUPTED stream state: signaling, respectively a
/// media connection, was lost and may still be resumed.
pub mod stop_reason {
    macro_rules! stop_table {
        ($($code:literal $name:ident $text:literal,)*) => {
            $(
                #[doc = concat!("`STOP_BC_", stringify!($name), "`: ", $text, ".")]
                pub const $name: u32 = $code;
            )*

            /// The name of a stop reason, for logs and reports ("unknown" for numbers it
            /// does not know).
            pub fn name(reason: i64) -> &'static str {
                match reason {
                    $($code => $text,)*
                    _ => "unknown",
                }
            }

            /// The table name of a stop reason (`STOP_BC_...`; `None` for unknown numbers).
            pub fn table_name(reason: i64) -> Option<&'static str> {
                match reason {
                    $($code => Some(concat!("STOP_BC_", stringify!($name))),)*
                    _ => None,
                }
            }
        };
    }

    stop_table! {
        0 UNDEFINED "undefined",
        1 HOST_TRIGGERED "host triggered",
        2 USER_TRIGGERED "user triggered",
        3 USER_LEFT "user left",
        4 USER_EJECTED "user ejected",
        5 HOST_DISABLED_APP "host disabled app",
        6 MEETING_ENDED "meeting ended",
        7 STREAM_CANCELED "stream canceled",
        8 STREAM_REVOKED "stream revoked",
        9 ALL_APPS_DISABLED "all apps disabled",
        10 INTERNAL_EXCEPTION "internal exception",
        11 CONNECTION_TIMEOUT "connection timeout",
        12 INSTANCE_CONNECTION_INTERRUPTED "instance connection interrupted",
        13 SIGNAL_CONNECTION_INTERRUPTED "signal connection interrupted",
        14 DATA_CONNECTION_INTERRUPTED "data connection interrupted",
        15 SIGNAL_CONNECTION_CLOSED_ABNORMALLY "signal connection closed abnormally",
        16 DATA_CONNECTION_CLOSED_ABNORMALLY "data connection closed abnormally",
        17 EXIT_SIGNAL "exit signal",
        18 AUTHENTICATION_FAILURE "authentication failure",
        19 AWAIT_RECONNECTION_TIMEOUT "await-reconnection timeout",
        20 RECEIVER_REQUEST_CLOSE "receiver request close",
        21 CUSTOMER_DISCONNECTED "customer disconnected",
        22 AGENT_DISCONNECTED "agent disconnected",
        23 ADMIN_DISABLED_APP "admin disabled app",
        24 KEEP_ALIVE_TIMEOUT "keep-alive timeout",
        25 MANUAL_API_TRIGGERED "manual API triggered",
        26 STREAMING_NOT_SUPPORTED "streaming not supported",
    }

    /// The first of the connection-interrupted reasons (12 to 16).
    pub const CONNECTION_INTERRUPTED_FIRST: u32 = INSTANCE_CONNECTION_INTERRUPTED;
    /// The last of the connection-interrupted reasons (12 to 16).
    pub const CONNECTION_INTERRUPTED_LAST: u32 = DATA_CONNECTION_CLOSED_ABNORMALLY;
    /// Stopped through the API (same as [`MANUAL_API_TRIGGERED`]).
    pub const MANUAL_API: u32 = MANUAL_API_TRIGGERED;
    /// The highest stop reason in the table.
    pub const MAX: u32 = STREAMING_NOT_SUPPORTED;

    /// Whether a stop reason is a connection failure (10 to 19, and 24): the stream
    /// failed rather than ended, and needs a full restart (a new stream).
    pub fn is_connection_failure(reason: i64) -> bool {
        matches!(reason, 10..=19 | 24)
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
        assert_eq!(stop_reason::name(14), "data connection interrupted");
        assert_eq!(
            stop_reason::table_name(19),
            Some("STOP_BC_AWAIT_RECONNECTION_TIMEOUT")
        );
        for r in 0..=stop_reason::MAX {
            assert_ne!(stop_reason::name(r.into()), "unknown", "{r}");
        }
        assert_eq!(stop_reason::name(27), "unknown");
        assert_eq!(stop_reason::name(-1), "unknown");
        assert_eq!(stop_reason::table_name(27), None);
    }

    #[test]
    fn connection_failures_are_10_to_19_and_24() {
        let failures: Vec<u32> = (0..=30)
            .filter(|r| stop_reason::is_connection_failure(i64::from(*r)))
            .collect();
        assert_eq!(failures, vec![10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 24]);
    }
}
