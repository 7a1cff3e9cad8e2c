//! The handshakes of a stream's sockets, from the client's side: signaling (1 → 2, with
//! Zoom's duplicate-request retries) and media (3 → 4), and the media sockets the
//! signaling reply asks for.

use std::sync::Arc;

use serde_json::Value;
use zoomhost_protocol::rtms::handshake::{self, Credentials};
use zoomhost_protocol::rtms::media::key;
use zoomhost_protocol::rtms::msg;
use zoomhost_protocol::rtms::status::{self, Retry};
use zoomhost_types::{AudioFormat, MediaKind};

use super::recovery::duplicate_delays;
use super::wire::{self, NoReply, Ws};
use crate::rtms::{protocol, HandshakeId, RtmsConfig, RtmsStats, StreamStart};

/// Who is shaking hands: the id field and value, the stream, the signature over them.
#[derive(Debug, Clone)]
pub(super) struct Who {
    id_key: &'static str,
    id: String,
    stream_id: String,
    signature: String,
}

impl Who {
    pub(super) fn new(config: &RtmsConfig, start: &StreamStart) -> Self {
        let id_key = match config.handshake_id {
            HandshakeId::Product => start.product().id_key(),
            HandshakeId::MeetingUuid => "meeting_uuid",
        };
        Self {
            id_key,
            id: start.meeting_uuid.clone(),
            stream_id: start.stream_id.clone(),
            signature: handshake::signature(
                &config.client_id,
                config.client_secret.expose(),
                &start.meeting_uuid,
                &start.stream_id,
            ),
        }
    }

    fn credentials(&self) -> Credentials<'_> {
        Credentials {
            id_key: self.id_key,
            id: &self.id,
            stream_id: &self.stream_id,
            signature: &self.signature,
        }
    }
}

/// Why a handshake did not succeed.
#[derive(Debug)]
pub(super) enum Failure {
    /// The connection failed or timed out: worth another attempt, with backoff.
    Lost(String),
    /// The server refused (with `status_code`, when it gave one) or answered nonsense.
    Refused(Option<i64>, String),
}

/// The media sockets a stream opens: the kinds each carries and its URL.
pub(super) type Plan = Vec<(Vec<MediaKind>, String)>;

/// Connects signaling (trying each URL in turn), shakes hands, and plans the media
/// sockets from the reply. A refusal as a duplicate (status 8: the server still holds
/// the previous signaling connection) is retried after growing delays, a few times.
pub(super) async fn signaling(
    config: &RtmsConfig,
    stats: &Arc<RtmsStats>,
    start: &StreamStart,
    who: &Who,
) -> Result<(Ws, Plan), Failure> {
    let binary = config.binary_frames;
    let delays = duplicate_delays(config.duplicate_retry, config.duplicate_retries);
    let mut retries = delays.iter();
    loop {
        let (mut sig, url) = wire::connect_any(&start.server_urls, config.connect_timeout)
            .await
            .map_err(Failure::Lost)?;
        let hello = handshake::signaling_request_for(
            wire::next_sequence(),
            &who.credentials(),
            protocol::CLIENT_AGENT,
            config.buffer_data,
        );
        if let Err(e) = wire::send(&mut sig, &hello, binary).await {
            return Err(Failure::Lost(format!("signaling {url}: {e}")));
        }
        let limit = config.connect_timeout;
        let reply = match wire::await_reply(&mut sig, msg::SIGNALING_HAND_SHAKE_RESP, limit, binary)
            .await
        {
            Ok(r) => r,
            Err(NoReply::Lost(e)) => return Err(Failure::Lost(format!("signaling {url}: {e}"))),
            Err(NoReply::Refused(e)) => {
                wire::close(&mut sig).await;
                return Err(Failure::Refused(None, format!("signaling handshake: {e}")));
            }
        };
        if let Some(code) = reply.status_code.filter(|c| *c != 0) {
            wire::close(&mut sig).await;
            let text = status::describe(code, reply.reason.as_deref());
            if status::retry(code) == Retry::Transient {
                if let Some(delay) = retries.next() {
                    RtmsStats::bump(&stats.status8_retries);
                    tracing::warn!(
                        stream = %start.stream_id,
                        "signaling handshake refused as a duplicate ({text}); retrying in {delay:?}"
                    );
                    tokio::time::sleep(*delay).await;
                    continue;
                }
            }
            return Err(Failure::Refused(
                Some(code),
                format!("signaling handshake refused: {text}"),
            ));
        }
        return match plan_media(reply.media_server.as_ref(), config) {
            Ok(plan) => Ok((sig, plan)),
            Err(e) => {
                wire::close(&mut sig).await;
                Err(Failure::Refused(None, e))
            }
        };
    }
}

/// Connects a media socket for `kinds` and runs its handshake; returns the socket and the
/// audio format the server confirmed.
pub(super) async fn media(
    config: &RtmsConfig,
    who: &Who,
    kinds: &[MediaKind],
    url: &str,
) -> Result<(Ws, AudioFormat), Failure> {
    let mut ws = wire::connect(url, config.connect_timeout)
        .await
        .map_err(Failure::Lost)?;
    let media_type = kinds
        .iter()
        .map(|k| protocol::media_bit(*k))
        .fold(0, |a, b| a | b);
    let request = handshake::data_request_for(
        wire::next_sequence(),
        &who.credentials(),
        media_type,
        protocol::media_params(kinds, config),
    );
    wire::send(&mut ws, &request, config.binary_frames)
        .await
        .map_err(|e| Failure::Lost(format!("media {url}: {e}")))?;
    let reply = match wire::await_reply(
        &mut ws,
        msg::DATA_HAND_SHAKE_RESP,
        config.connect_timeout,
        config.binary_frames,
    )
    .await
    {
        Ok(r) => r,
        Err(NoReply::Lost(e)) => return Err(Failure::Lost(format!("media {url}: {e}"))),
        Err(NoReply::Refused(e)) => {
            wire::close(&mut ws).await;
            return Err(Failure::Refused(
                None,
                format!("media handshake ({url}): {e}"),
            ));
        }
    };
    if let Some(code) = reply.status_code.filter(|c| *c != 0) {
        wire::close(&mut ws).await;
        return Err(Failure::Refused(
            Some(code),
            format!(
                "media handshake ({}) refused: {}",
                kinds_label(kinds),
                status::describe(code, reply.reason.as_deref())
            ),
        ));
    }
    Ok((
        ws,
        protocol::confirmed_audio(reply.media_params.as_ref(), &config.audio),
    ))
}

/// `audio+transcript`.
pub(super) fn kinds_label(kinds: &[MediaKind]) -> String {
    kinds
        .iter()
        .map(|k| protocol::url_key(*k))
        .collect::<Vec<_>>()
        .join("+")
}

/// Which media sockets to open: one per kind using the per-kind URL (as Zoom's client
/// does), or one `all` socket when the server offers nothing else or config asks for it.
fn plan_media(media_server: Option<&Value>, config: &RtmsConfig) -> Result<Plan, String> {
    let urls = media_server
        .and_then(|m| m.get("server_urls"))
        .ok_or("the signaling reply has no media_server.server_urls")?;
    let url_of = |key: &str| -> Option<String> {
        match urls {
            Value::Object(map) => map.get(key).and_then(Value::as_str).map(str::to_string),
            // Some servers give one URL for everything.
            Value::String(s) => Some(s.clone()),
            _ => None,
        }
        .filter(|u| !u.is_empty())
    };
    let per_kind: Option<Plan> = config
        .media
        .iter()
        .map(|k| url_of(protocol::url_key(*k)).map(|u| (vec![*k], u)))
        .collect();
    match (config.single_socket, per_kind, url_of(key::ALL)) {
        (false, Some(plan), _) => Ok(plan),
        (_, _, Some(all)) => Ok(vec![(config.media.clone(), all)]),
        (true, Some(plan), None) => Ok(plan),
        (_, None, None) => Err(format!(
            "the signaling reply has no media server URL for {:?} (and no `all`): {urls}",
            config
                .media
                .iter()
                .map(|k| protocol::url_key(*k))
                .collect::<Vec<_>>()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zoomhost_protocol::rtms::handshake::request_id;
    use zoomhost_protocol::Secret;
    use zoomhost_types::SessionKind;

    fn start(kind: SessionKind) -> StreamStart {
        StreamStart {
            kind,
            meeting_uuid: "e-1".into(),
            stream_id: "s-1".into(),
            server_urls: vec!["wss://a".into()],
        }
    }

    #[test]
    fn the_id_field_follows_the_switch_and_the_signature_its_value() {
        let mut config = RtmsConfig::new("cid", Secret::new("secret"));
        let who = Who::new(&config, &start(SessionKind::ContactCenter));
        let hello = handshake::signaling_request_for(1, &who.credentials(), "x", Some(true));
        assert_eq!(request_id(&hello), Some(("engagement_id", "e-1")));
        assert_eq!(hello["buffer_data"], true);
        assert_eq!(
            hello["signature"],
            handshake::signature("cid", "secret", "e-1", "s-1")
        );
        let phone = Who::new(&config, &start(SessionKind::Phone));
        let media = handshake::data_request_for(2, &phone.credentials(), 1, Value::Null);
        assert_eq!(request_id(&media), Some(("call_id", "e-1")));
        config.handshake_id = HandshakeId::MeetingUuid;
        let who = Who::new(&config, &start(SessionKind::ContactCenter));
        let hello = handshake::signaling_request_for(1, &who.credentials(), "x", None);
        assert_eq!(request_id(&hello), Some(("meeting_uuid", "e-1")));
        assert!(hello.get("buffer_data").is_none());
    }
}
