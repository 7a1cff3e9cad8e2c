//! The outside world: Zoom's OAuth token endpoint, the event WebSocket, webhooks and
//! RTMS media streams. Sources turn what Zoom sends into plain inputs handed to an
//! `InputSink`; they never know about plugins.
//!
//! # What the code relies on about Zoom's wire formats
//!
//! These notes are the project's own summary of Zoom's public documentation, its samples,
//! and what Zoom's official RTMS SDK (PyPI `rtms`) sends; the simulator in `zoomhost_sim`
//! speaks the same formats from the server side. Be liberal in what is accepted.
//!
//! ## OAuth (Server-to-Server), [`oauth`]
//! `POST {oauth_url}` with HTTP Basic auth (`client_id:client_secret`) and either
//! `grant_type=account_credentials&account_id=...` or `grant_type=client_credentials`, the
//! parameters in the query or a form body. The answer carries `access_token` and
//! `expires_in` (seconds, usually 3600); bad credentials get a 401 with
//! `error: invalid_client`. Tokens are refreshed ahead of expiry; 429 and 5xx are retried
//! with backoff.
//!
//! ## Event WebSocket, [`events`]
//! `wss://ws.zoom.us/ws?subscriptionId=...&access_token=...` (the token only counts in the
//! query). Every server message is an envelope `{module, success, content}`: first
//! `build_connection` (`success: false` with a reason such as "Invalid Token" when the
//! token is refused, then a close), `heartbeat` answering the client's
//! `{"module":"heartbeat"}` (sent every 30 s), and `message`, whose `content` is a JSON
//! *string* holding the webhook-shaped `{event, event_ts, payload}`. Zoom publishes no close
//! codes; about 45 s of silence means the connection is dead. Events sent while no
//! connection is up are not replayed, and a second connection for one subscription closes
//! the first. So the client reconnects at once (jitter under 1 s) after an established
//! connection ends, backs off (capped at 15 s) only across failed attempts, and never
//! closes a live connection to renew its token: a fresh one is fetched in the background
//! and used when the server closes the connection at expiry ([`events::reconnect`]).
//!
//! ## Webhooks, [`webhook`]
//! `x-zm-request-timestamp` (epoch seconds) and `x-zm-signature: v0=HEX`, HEX being
//! HMAC-SHA256 keyed by the webhook secret token over `v0:{timestamp}:{raw body}`; checked
//! over the raw bytes in constant time, within a timestamp window. `endpoint.url_validation`
//! is answered with `{plainToken, encryptedToken}` (`encryptedToken` = hex HMAC-SHA256 of
//! the plain token). A 200/204 within 3 s counts as delivered; anything else is retried
//! later, so answers are immediate and deliveries are deduplicated. Both sources give an
//! event the same content-derived id, so the host delivers an event that came both ways
//! once.
//!
//! ## Events
//! Payloads are `{account_id, object: {...}}`, except the RTMS lifecycle, whose fields are
//! flat: `*.rtms_started` (the product's id, `rtms_stream_id`, `server_urls`: a
//! comma-separated string of URLs for different transports, only the `ws(s)` ones being
//! WebSocket servers), `*.rtms_stopped` (`stop_reason`) and `*.rtms_interrupted` (the ids
//! only), for meetings (`meeting_uuid`), `webinar.*` (`webinar_uuid`), `session.*`
//! (`session_id`), `contact_center.voice_rtms_*` (`engagement_id`) and `phone.rtms_*`
//! (`call_id`). Zoom sends `*.rtms_started` again, same ids, new `server_urls`, newer
//! `event_ts`, when a stream moved to another server. `rtms.concurrency_limited` and
//! `rtms.concurrency_near_limit` report the account's concurrent streams.
//!
//! ## RTMS, [`rtms`]
//! One signaling WebSocket (from `server_urls`) and media WebSockets (URLs from the
//! signaling answer) per stream; every message is a JSON object with an integer
//! `msg_type`, in text or binary frames either way. Each handshake carries the session id
//! (under the product's key, or `meeting_uuid` as Zoom's C SDK sends it) and is signed
//! with lowercase hex HMAC-SHA256 keyed by the client secret over
//! `{client_id},{id},{stream_id}`; the signaling handshake may carry `buffer_data`
//! (default true: audio from before the connection is replayed). Signaling: handshake 1
//! → 2 (`status_code` 0 and the media URLs per kind: `audio`, `video`, `deskshare`,
//! `transcript`, `chat`, `all`), event subscription 5, event updates 6 (1 first packet
//! and 7 media interrupted come unasked; 2 active speaker, 3/4 join/leave, 5/6 sharing,
//! 8/9 video on/off, 10–14 chat groups; Contact Center streams number 8–29 as their own
//! call events), client-ready 7 after the media handshakes (again after every media
//! re-handshake), stream state 8 (2 interrupted with reason 13 signaling or 14 media;
//! 4 terminated ends the stream), session state 9, close request 21 → 22, individual
//! video subscription 28 → 29. Media: handshake 3 → 4 (`media_type` bitmask audio 1,
//! video 2, deskshare 4, transcript 8, chat 16, all 32; the answer's `media_params` are
//! the effective ones), then data 14 audio, 15 video, 16 share, 17 transcript, 18 chat
//! (`content` with `user_id`, `user_name`, base64 `data` or text (chat: a JSON object),
//! `timestamp` in ms; Contact Center adds `channel_id`). Transcript languages are Zoom's
//! language numbers (-1 none, 0 Arabic ... 9 English ... 36 Vietnamese): the transcript
//! params ask with `src_language` (and `enable_lid`, detection, on unless turned off),
//! transcript data says `language`; plugins get the language's BCP 47 tag (`9` is `en`,
//! `12` is `fr-CA`; `zoomhost_protocol::rtms::language`), text from older servers
//! unchanged, nothing for -1. Keep-alive 12 arrives on every socket (every 10 s while
//! idle) and is answered at once with 13 echoing `sequence` and `timestamp`. Audio
//! defaults: L16, 16 kHz, mono, mixed, 20 ms (640 bytes a frame).
//! Status codes run to 47 (8 and 16, duplicate connections, are worth a retry); stop
//! reasons to 26 (10–19 and 24 are connection failures).
//!
//! Zoom's failure contract, which the client follows: a lost signaling socket takes media
//! with it and Zoom sends `*.rtms_interrupted`, then keeps the stream resumable for 60 s;
//! a lost media socket is announced on signaling (event 7, or state 2 with reason 14) and
//! resumable for 65 s; a failed server is announced by a newer `*.rtms_started`; the
//! client backs off 3 s doubling to 30 s and starts over after each successful handshake,
//! and acts on a bare socket close only when no signal came. During an outage Zoom
//! buffers audio and replays it with the original timestamps; video is never buffered.
//! Because the stream lives on Zoom's side for 60 s after its client vanished, another
//! process can take it over: the client reports each stream's non-secret state and
//! progress through [`rtms::StreamStateSink`], and another client resumes it from that
//! ([`rtms::RtmsManager::resume`]) or receives it from a node handing it over
//! ([`rtms::RtmsManager::hand_over`]); this crate knows nothing of where the state is kept.

pub mod config;
pub mod events;
pub mod oauth;
pub(crate) mod retry;
pub mod rtms;
pub(crate) mod text;
pub mod webhook;

use std::future::Future;
use std::pin::Pin;

/// An access token and when it stops being usable.
#[derive(Clone)]
pub struct AccessToken {
    /// The bearer token. Never log it.
    pub secret: String,
    /// When it expires.
    pub expires_at: std::time::Instant,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("secret", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Where a source gets its access token: the OAuth token manager in production, anything
/// that hands out tokens in tests.
pub trait TokenSource: Send + Sync + 'static {
    /// A valid token, fetching or refreshing it if needed. Concurrent callers share one
    /// request.
    fn token(&self) -> Pin<Box<dyn Future<Output = anyhow::Result<AccessToken>> + Send + '_>>;

    /// Tells the source that the server rejected `token`: the next `token()` fetches a
    /// new one.
    fn invalidate(&self, token: &AccessToken);
}
