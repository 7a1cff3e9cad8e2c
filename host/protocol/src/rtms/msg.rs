//! `msg_type` numbers, and the `event_type` numbers of event updates.
//!
//! Handshakes (1 to 4) open each socket. Signaling then carries the client's event
//! subscription (5) and ready acknowledgement (7) and the server's event, stream and
//! session updates (6, 8, 9); state requests (10, 19) and the close request (21) may be
//! sent on it at any time and are answered with 11, 20 and 22. Keep-alives (12, answered
//! with 13) run on every socket. Media data (14 to 18) flows on the media sockets only,
//! one `msg_type` per media type.

/// Client → signaling: handshake request.
pub const SIGNALING_HAND_SHAKE_REQ: u32 = 1;
/// Signaling → client: handshake response with the media server URLs.
pub const SIGNALING_HAND_SHAKE_RESP: u32 = 2;
/// Client → media: handshake request.
pub const DATA_HAND_SHAKE_REQ: u32 = 3;
/// Media → client: handshake response with the effective media params.
pub const DATA_HAND_SHAKE_RESP: u32 = 4;
/// Client → signaling: event subscription.
pub const EVENT_SUBSCRIPTION: u32 = 5;
/// Signaling → client: an event (active speaker, join, leave, ...).
pub const EVENT_UPDATE: u32 = 6;
/// Client → signaling: media handshakes done, start sending.
pub const CLIENT_READY_ACK: u32 = 7;
/// Signaling → client: stream state.
pub const STREAM_STATE_UPDATE: u32 = 8;
/// Signaling → client: session state.
pub const SESSION_STATE_UPDATE: u32 = 9;
/// Session state request.
pub const SESSION_STATE_REQ: u32 = 10;
/// Session state response.
pub const SESSION_STATE_RESP: u32 = 11;
/// Server → client on every socket: keep-alive request.
pub const KEEP_ALIVE_REQ: u32 = 12;
/// Client → server on the same socket: keep-alive response.
pub const KEEP_ALIVE_RESP: u32 = 13;
/// Audio data.
pub const MEDIA_DATA_AUDIO: u32 = 14;
/// Video data.
pub const MEDIA_DATA_VIDEO: u32 = 15;
/// Screen-share data.
pub const MEDIA_DATA_SHARE: u32 = 16;
/// Transcript data.
pub const MEDIA_DATA_TRANSCRIPT: u32 = 17;
/// Chat data.
pub const MEDIA_DATA_CHAT: u32 = 18;
/// Stream state request.
pub const STREAM_STATE_REQ: u32 = 19;
/// Stream state response.
pub const STREAM_STATE_RESP: u32 = 20;
/// Stream close request.
pub const STREAM_CLOSE_REQ: u32 = 21;
/// Stream close response.
pub const STREAM_CLOSE_RESP: u32 = 22;
/// Audio metadata.
pub const META_DATA_AUDIO: u32 = 23;
/// Video metadata (reserved).
pub const META_DATA_VIDEO: u32 = 24;
/// Screen-share metadata (reserved).
pub const META_DATA_SHARE: u32 = 25;
/// Transcript metadata (reserved).
pub const META_DATA_TRANSCRIPT: u32 = 26;
/// Chat metadata (reserved).
pub const META_DATA_CHAT: u32 = 27;
/// Client → signaling: subscribe the individual video to one participant (or stop).
pub const VIDEO_SUBSCRIPTION_REQ: u32 = 28;
/// Signaling → client: the answer to a video subscription.
pub const VIDEO_SUBSCRIPTION_RESP: u32 = 29;

/// `event_type` values of `EVENT_UPDATE` (6) and `EVENT_SUBSCRIPTION` (5) for meetings,
/// webinars, Video SDK sessions and Zoom Phone. Contact Center voice streams number their
/// events differently from 8 on ([`zcc_event_type`]): read an `event_type` with the
/// stream's product ([`event_name`]).
///
/// 1 and 7 are sent without a subscription; Zoom asks clients not to subscribe to them.
pub mod event_type {
    /// The timestamp of the stream's first media packet (`timestamp`).
    pub const FIRST_PACKET_TIMESTAMP: u32 = 1;
    /// Active speaker changed (`user_id`, `user_name`).
    pub const ACTIVE_SPEAKER_CHANGE: u32 = 2;
    /// Participants joined (`participants: [{user_id, user_name}]`).
    pub const PARTICIPANT_JOIN: u32 = 3;
    /// Participants left (`participants: [{user_id, user_name}]`).
    pub const PARTICIPANT_LEAVE: u32 = 4;
    /// Screen sharing started (`user_id`, `user_name`).
    pub const SHARING_START: u32 = 5;
    /// Screen sharing stopped.
    pub const SHARING_STOP: u32 = 6;
    /// A media connection was interrupted (`timestamp`; the simulator adds `media_type`,
    /// the bits of the media types it carried).
    pub const MEDIA_CONNECTION_INTERRUPTED: u32 = 7;
    /// Participants turned their video on (`participants: [{user_id}]`).
    pub const PARTICIPANT_VIDEO_ON: u32 = 8;
    /// Participants turned their video off.
    pub const PARTICIPANT_VIDEO_OFF: u32 = 9;
    /// A chat group was created.
    pub const CHAT_GROUP_CREATE: u32 = 10;
    /// A chat group was deleted.
    pub const CHAT_GROUP_DELETE: u32 = 11;
    /// Members were added to a chat group.
    pub const CHAT_GROUP_MEMBERS_ADD: u32 = 12;
    /// Members were removed from a chat group.
    pub const CHAT_GROUP_MEMBERS_DELETE: u32 = 13;
    /// A chat group member's status changed.
    pub const CHAT_GROUP_MEMBER_STATUS_UPDATE: u32 = 14;

    /// Names, in number order from 1.
    pub(super) const NAMES: [&str; 14] = [
        "FIRST_PACKET_TIMESTAMP",
        "ACTIVE_SPEAKER_CHANGE",
        "PARTICIPANT_JOIN",
        "PARTICIPANT_LEAVE",
        "SHARING_START",
        "SHARING_STOP",
        "MEDIA_CONNECTION_INTERRUPTED",
        "PARTICIPANT_VIDEO_ON",
        "PARTICIPANT_VIDEO_OFF",
        "CHAT_GROUP_CREATE",
        "CHAT_GROUP_DELETE",
        "CHAT_GROUP_MEMBERS_ADD",
        "CHAT_GROUP_MEMBERS_DELETE",
        "CHAT_GROUP_MEMBER_STATUS_UPDATE",
    ];
}

/// Contact Center voice `event_type` values (8 to 29; 1 to 7 mean what they mean for
/// meetings). Their payload carries `event_ts` and `paticipant_info` (spelled so by
/// Zoom) with the party's `channel_id`.
pub mod zcc_event_type {
    /// The consumer answered.
    pub const CONSUMER_ANSWERED: u32 = 8;
    /// The consumer ended.
    pub const CONSUMER_END: u32 = 9;
    /// The agent answered.
    pub const USER_ANSWERED: u32 = 10;
    /// The agent ended.
    pub const USER_END: u32 = 11;
    /// The agent put the call on hold.
    pub const USER_HOLD: u32 = 12;
    /// The agent took the call off hold.
    pub const USER_UNHOLD: u32 = 13;
    /// Monitoring started.
    pub const MONITOR_STARTED: u32 = 14;
    /// Monitoring changed mode.
    pub const MONITOR_TRANSITIONED: u32 = 15;
    /// Monitoring ended.
    pub const MONITOR_ENDED: u32 = 16;
    /// A supervisor took over.
    pub const TAKEOVER_STARTED: u32 = 17;
    /// A transfer was initiated.
    pub const TRANSFER_INITIATED: u32 = 18;
    /// A transfer was canceled.
    pub const TRANSFER_CANCELED: u32 = 19;
    /// A transfer was accepted.
    pub const TRANSFER_ACCEPTED: u32 = 20;
    /// A transfer completed.
    pub const TRANSFER_COMPLETED: u32 = 21;
    /// A transfer was rejected.
    pub const TRANSFER_REJECTED: u32 = 22;
    /// A transfer timed out.
    pub const TRANSFER_TIMEOUT: u32 = 23;
    /// A conference was canceled.
    pub const CONFERENCE_CANCELED: u32 = 24;
    /// A conference participant was canceled.
    pub const CONFERENCE_PARTICIPANT_CANCELED: u32 = 25;
    /// A conference participant was invited.
    pub const CONFERENCE_PARTICIPANT_INVITED: u32 = 26;
    /// A conference participant rejected.
    pub const CONFERENCE_PARTICIPANT_REJECTED: u32 = 27;
    /// A conference invitation timed out.
    pub const CONFERENCE_PARTICIPANT_TIMEOUT: u32 = 28;
    /// A conference participant left.
    pub const CONFERENCE_PARTICIPANT_LEFT: u32 = 29;

    /// Names, in number order from 8.
    pub(super) const NAMES: [&str; 22] = [
        "CONSUMER_ANSWERED",
        "CONSUMER_END",
        "USER_ANSWERED",
        "USER_END",
        "USER_HOLD",
        "USER_UNHOLD",
        "MONITOR_STARTED",
        "MONITOR_TRANSITIONED",
        "MONITOR_ENDED",
        "TAKEOVER_STARTED",
        "TRANSFER_INITIATED",
        "TRANSFER_CANCELED",
        "TRANSFER_ACCEPTED",
        "TRANSFER_COMPLETED",
        "TRANSFER_REJECTED",
        "TRANSFER_TIMEOUT",
        "CONFERENCE_CANCELED",
        "CONFERENCE_PARTICIPANT_CANCELED",
        "CONFERENCE_PARTICIPANT_INVITED",
        "CONFERENCE_PARTICIPANT_REJECTED",
        "CONFERENCE_PARTICIPANT_TIMEOUT",
        "CONFERENCE_PARTICIPANT_LEFT",
    ];
}

/// The name of an `event_type` in a stream of `product`: Contact Center voice streams
/// read 8 to 29 from [`zcc_event_type`], every other product 1 to 14 from
/// [`event_type`] (`None` for numbers the product does not define).
pub fn event_name(product: super::product::Product, event_type: u32) -> Option<&'static str> {
    let index = |first: u32, names: &'static [&'static str]| {
        event_type
            .checked_sub(first)
            .and_then(|i| names.get(i as usize))
            .copied()
    };
    match (product, event_type) {
        (super::product::Product::ContactCenter, 8..) => index(8, &zcc_event_type::NAMES),
        _ => index(1, &event_type::NAMES),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtms::product::Product;

    #[test]
    fn events_are_read_with_the_product() {
        assert_eq!(
            event_name(Product::Meeting, 8),
            Some("PARTICIPANT_VIDEO_ON")
        );
        assert_eq!(
            event_name(Product::ContactCenter, 8),
            Some("CONSUMER_ANSWERED")
        );
        assert_eq!(
            event_name(Product::ContactCenter, 29),
            Some("CONFERENCE_PARTICIPANT_LEFT")
        );
        assert_eq!(
            event_name(Product::ContactCenter, 7),
            Some("MEDIA_CONNECTION_INTERRUPTED")
        );
        assert_eq!(
            event_name(Product::Phone, 14),
            Some("CHAT_GROUP_MEMBER_STATUS_UPDATE")
        );
        assert_eq!(event_name(Product::Meeting, 15), None);
        assert_eq!(event_name(Product::Meeting, 0), None);
        assert_eq!(event_name(Product::ContactCenter, 30), None);
    }
}
