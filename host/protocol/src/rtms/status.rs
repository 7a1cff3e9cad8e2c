//! `status_code` of handshake replies (2, 4) and of the close response (22).
//!
//! 0 is success; anything else refuses the request, with a free-text `reason` beside the
//! code. The names below are those of Zoom's RTMS status table (`STATUS_` and the
//! constant's name). Zoom's published tables differ between pages, so a number alone
//! does not always mean what its name says: reports always carry the number too
//! ([`describe`]).

macro_rules! status_table {
    ($($code:literal $name:ident,)*) => {
        $(
            #[doc = concat!("`STATUS_", stringify!($name), "`.")]
            pub const $name: u32 = $code;
        )*

        /// Every code and its table name, in code order.
        const TABLE: &[(u32, &str)] = &[$(($code, concat!("STATUS_", stringify!($name)))),*];
    };
}

status_table! {
    0 OK,
    1 INVALID_MESSAGE_TYPE,
    2 INVALID_RTMS_STREAM_ID,
    3 INVALID_SIGNATURE,
    4 INVALID_PAYLOAD,
    5 INVALID_EVENTS,
    6 INVALID_EVENT_TYPE,
    7 INVALID_MEDIA_TYPE,
    8 DUPLICATE_SIGNAL_REQUEST,
    9 MEDIA_TYPE_AUDIO_NOT_SUPPORT,
    10 MEDIA_TYPE_VIDEO_NOT_SUPPORT,
    11 MEDIA_TYPE_DESKSHARE_NOT_SUPPORT,
    12 MEDIA_TYPE_TRANSCRIPT_NOT_SUPPORT,
    13 MEDIA_TYPE_CHAT_NOT_SUPPORT,
    14 MEDIA_TYPE_INVALID_VALUE,
    15 MEDIA_DATA_ALL_CONNECTION_EXIST,
    16 DUPLICATE_MEDIA_DATA_CONNECTION,
    17 INVALID_MEDIA_PARAMS,
    18 INVALID_MEDIA_AUDIO_PARAMS,
    19 INVALID_MEDIA_AUDIO_CONTENT_TYPE,
    20 INVALID_MEDIA_AUDIO_SAMPLE_RATE,
    21 INVALID_MEDIA_AUDIO_CHANNEL,
    22 INVALID_MEDIA_AUDIO_CODEC,
    23 INVALID_MEDIA_AUDIO_DATA_OPT,
    24 INVALID_MEDIA_AUDIO_SEND_RATE,
    25 INVALID_MEDIA_VIDEO_PARAMS,
    26 INVALID_MEDIA_VIDEO_CONTENT_TYPE,
    27 INVALID_MEDIA_VIDEO_CODEC,
    28 INVALID_MEDIA_VIDEO_RESOLUTION,
    29 INVALID_MEDIA_VIDEO_DATA_OPT,
    30 INVALID_MEDIA_VIDEO_FPS,
    31 INVALID_MEDIA_DESKSHARE_PARAMS,
    32 INVALID_MEDIA_DESKSHARE_CONTENT_TYPE,
    33 INVALID_MEDIA_DESKSHARE_CODEC,
    34 INVALID_MEDIA_DESKSHARE_RESOLUTION,
    35 INVALID_MEDIA_DESKSHARE_FPS,
    36 INVALID_MEDIA_TRANSCRIPT_PARAMS,
    37 INVALID_MEDIA_TRANSCRIPT_CONTENT_TYPE,
    38 INVALID_MEDIA_CHAT_PARAMS,
    39 INVALID_MEDIA_CHAT_CONTENT_TYPE,
    40 INVALID_RTMS_SESSION_ID,
    41 INVALID_CLIENT_READY_ACK,
    42 INVALID_EVENT_SUBSCRIBE,
    43 INVALID_MEDIA_TRANSCRIPT_SOURCE_LANGUAGE,
    44 DUPLICATE_VIDEO_SUBSCRIPTION,
    45 INTERNAL_EXCEPTION,
    46 INVALID_MEDIA_TRANSCRIPT_TARGET_LANGUAGE,
    47 CHAT_SESSION_KEY_NOT_AVAILABLE,
}

/// What a client should do when a handshake is refused with a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Try again after a short delay: the server still holds the previous connection
    /// (8, a duplicate signaling request). Zoom's own clients retry a few times, with
    /// growing delays, on the first handshake too.
    Transient,
    /// After a dropped media socket the server may still hold the old one (16, a
    /// duplicate media connection): one delayed retry, then give up.
    OnceAfterMediaDrop,
    /// Retrying cannot help (bad signature, unknown stream, bad params, ...): give up.
    Final,
}

/// How a client treats a refusal with `code` (every code but 8 and 16 is final).
pub fn retry(code: i64) -> Retry {
    match u32::try_from(code) {
        Ok(DUPLICATE_SIGNAL_REQUEST) => Retry::Transient,
        Ok(DUPLICATE_MEDIA_DATA_CONNECTION) => Retry::OnceAfterMediaDrop,
        _ => Retry::Final,
    }
}

/// The table name of a non-zero `status_code` (`None` for 0 and unknown codes).
pub fn name(code: i64) -> Option<&'static str> {
    TABLE
        .iter()
        .find(|(c, _)| i64::from(*c) == code)
        .map(|(_, name)| *name)
        .filter(|_| code != 0)
}

/// `"status_code 3 (STATUS_INVALID_SIGNATURE in Zoom's RTMS status table): reason"`;
/// the name and the reason when there are any.
pub fn describe(code: i64, reason: Option<&str>) -> String {
    let mut text = format!("status_code {code}");
    if let Some(name) = name(code) {
        text.push_str(&format!(" ({name} in Zoom's RTMS status table)"));
    }
    if let Some(reason) = reason.filter(|r| !r.is_empty()) {
        text.push_str(&format!(": {reason}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_are_reported_with_the_number() {
        assert_eq!(
            describe(3, Some("bad")),
            "status_code 3 (STATUS_INVALID_SIGNATURE in Zoom's RTMS status table): bad"
        );
        assert_eq!(describe(99, None), "status_code 99");
        assert_eq!(name(0), None);
    }

    #[test]
    fn the_table_is_every_code_in_order() {
        for (i, (code, _)) in TABLE.iter().enumerate() {
            assert_eq!(*code as usize, i);
        }
        assert_eq!(
            name(INVALID_SIGNATURE.into()),
            Some("STATUS_INVALID_SIGNATURE")
        );
        assert_eq!(
            name(INVALID_MEDIA_TRANSCRIPT_SOURCE_LANGUAGE.into()),
            Some("STATUS_INVALID_MEDIA_TRANSCRIPT_SOURCE_LANGUAGE")
        );
        assert_eq!(
            name(CHAT_SESSION_KEY_NOT_AVAILABLE.into()),
            Some("STATUS_CHAT_SESSION_KEY_NOT_AVAILABLE")
        );
        assert_eq!(name(48), None);
        assert_eq!(name(-1), None);
        assert_eq!(describe(0, Some("")), "status_code 0");
    }

    #[test]
    fn only_duplicates_are_worth_retrying() {
        assert_eq!(retry(8), Retry::Transient);
        assert_eq!(retry(16), Retry::OnceAfterMediaDrop);
        for code in [2, 3, 4, 17, 40, 44, 45, 47, -1, 99] {
            assert_eq!(retry(code), Retry::Final, "{code}");
        }
    }
}
