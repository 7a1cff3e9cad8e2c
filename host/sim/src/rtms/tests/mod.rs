//! The RTMS servers against a tiny hand-driven client over loopback.

use std::collections::BTreeSet;
use std::path::Path;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{
    connect_async, connect_async_with_config, MaybeTlsStream, WebSocketStream,
};

use super::*;

mod faults;
mod language;
mod video;

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Longest wait for anything; tests normally take milliseconds.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// How a client socket ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The server sent a close frame with this code.
    Close(Option<u16>),
    /// EOF or reset without a close frame.
    Abrupt,
}

pub(crate) struct Peer {
    pub(crate) ws: Ws,
    pub(crate) binary: bool,
    pub(crate) answer_keepalives: bool,
    pub(crate) keepalives: u32,
    /// Frames from the server that were binary.
    pub(crate) binary_frames: u32,
    pub(crate) ended: Option<Ended>,
}

impl Peer {
    pub(crate) async fn connect(url: &str, binary: bool) -> Peer {
        // A 16 KiB read buffer: tungstenite zero-fills it before every read.
        let config = WebSocketConfig::default().read_buffer_size(16 * 1024);
        let (ws, _) = connect_async_with_config(url, Some(config), true)
            .await
            .expect("connect");
        Peer {
            ws,
            binary,
            answer_keepalives: true,
            keepalives: 0,
            binary_frames: 0,
            ended: None,
        }
    }

    pub(crate) async fn send(&mut self, v: Value) {
        let message = if self.binary {
            Message::binary(v.to_string().into_bytes())
        } else {
            Message::text(v.to_string())
        };
        self.ws.send(message).await.expect("send");
    }

    /// The next JSON message (keep-alives answered when enabled); `None` once the
    /// socket ended (see `ended`).
    pub(crate) async fn next(&mut self) -> Option<Value> {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for the server");
            let v: Value = match message {
                Some(Ok(Message::Text(t))) => serde_json::from_str(t.as_str()).expect("JSON"),
                Some(Ok(Message::Binary(b))) => {
                    self.binary_frames += 1;
                    serde_json::from_slice(&b).expect("JSON")
                }
                Some(Ok(Message::Close(frame))) => {
                    self.ended = Some(Ended::Close(frame.map(|f| f.code.into())));
                    // Let tungstenite answer the close.
                    while let Ok(Some(Ok(_))) = tokio::time::timeout(WAIT, self.ws.next()).await {}
                    return None;
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => {
                    self.ended.get_or_insert(Ended::Abrupt);
                    return None;
                }
            };
            if v["msg_type"] == 12 {
                self.keepalives += 1;
                if self.answer_keepalives {
                    let answer = json!({"msg_type": 13, "sequence": v["sequence"], "timestamp": v["timestamp"]});
                    self.send(answer).await;
                }
                continue;
            }
            return Some(v);
        }
    }

    /// The next message, which must be of `msg_type`.
    pub(crate) async fn expect(&mut self, msg_type: u64) -> Value {
        let v = self.next().await.expect("socket ended");
        assert_eq!(v["msg_type"], msg_type, "unexpected message {v}");
        v
    }

    /// Every message until the socket ends.
    pub(crate) async fn drain(mut self) -> (Vec<Value>, Option<Ended>, Peer) {
        let mut out = Vec::new();
        while let Some(v) = self.next().await {
            out.push(v);
        }
        let ended = self.ended;
        (out, ended, self)
    }
}

pub(crate) fn handshake(msg_type: u64, stream: &SimStream, config: &RtmsSimConfig) -> Value {
    json!({
        "msg_type": msg_type,
        "protocol_version": 1,
        "sequence": rand::random::<u32>(),
        "meeting_uuid": stream.meeting_uuid(),
        "rtms_stream_id": stream.stream_id(),
        "signature": expected_signature(&config.client_id, &config.client_secret, stream.meeting_uuid(), stream.stream_id()),
    })
}

pub(crate) async fn signaling(sim: &RtmsSim, stream: &SimStream, binary: bool) -> (Peer, Value) {
    signaling_at(&sim.signaling_url(), stream, sim.config(), binary).await
}

/// An accepted signaling handshake at `url` (any server generation); the reply.
pub(crate) async fn signaling_at(
    url: &str,
    stream: &SimStream,
    config: &RtmsSimConfig,
    binary: bool,
) -> (Peer, Value) {
    let mut peer = Peer::connect(url, binary).await;
    peer.send(handshake(1, stream, config)).await;
    let reply = peer.expect(2).await;
    assert_eq!(reply["status_code"], 0, "{reply}");
    (peer, reply)
}

pub(crate) fn audio_params() -> Value {
    json!({"content_type": 2, "codec": 1, "sample_rate": 1, "channel": 1, "data_opt": 1, "send_rate": 20})
}

pub(crate) async fn media(
    url: &str,
    sim: &RtmsSim,
    stream: &SimStream,
    media_type: u64,
    params: Value,
    binary: bool,
) -> (Peer, Value) {
    let mut peer = Peer::connect(url, binary).await;
    let mut request = handshake(3, stream, sim.config());
    request["media_type"] = media_type.into();
    request["media_params"] = params;
    peer.send(request).await;
    let reply = peer.expect(4).await;
    (peer, reply)
}

/// The audio socket at the signaling `reply`'s audio URL, asking for [`audio_params`] in
/// text frames, then the ready ack on `sig`: the audio socket and its handshake reply.
pub(crate) async fn audio_then_ready(
    sig: &mut Peer,
    reply: &Value,
    sim: &RtmsSim,
    stream: &SimStream,
) -> (Peer, Value) {
    let params = json!({"audio": audio_params()});
    let (audio, a4) = media(&url_of(reply, "audio"), sim, stream, 1, params, false).await;
    sig.send(json!({"msg_type": 7, "rtms_stream_id": stream.stream_id()}))
        .await;
    (audio, a4)
}

/// A receiving client: signaling at `url` (binary frames if `binary`), one accepted audio
/// socket and the ready ack: (signaling, audio, the audio handshake reply).
pub(crate) async fn connect_audio(
    url: &str,
    sim: &RtmsSim,
    stream: &SimStream,
    binary: bool,
) -> (Peer, Peer, Value) {
    let (mut sig, reply) = signaling_at(url, stream, sim.config(), binary).await;
    let (audio, a4) = audio_then_ready(&mut sig, &reply, sim, stream).await;
    assert_eq!(a4["status_code"], 0, "{a4}");
    (sig, audio, a4)
}

pub(crate) fn url_of(reply: &Value, key: &str) -> String {
    reply["media_server"]["server_urls"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} URL in {reply}"))
        .to_string()
}

pub(crate) fn decode(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v["content"]["data"].as_str().expect("data"))
        .expect("base64")
}

pub(crate) fn participants(n: u32) -> Vec<SimParticipant> {
    (0..n)
        .map(|i| SimParticipant::new(16_000_001 + i, format!("Person {i}")))
        .collect()
}

pub(crate) async fn sim(tune: impl FnOnce(&mut RtmsSimConfig)) -> Arc<RtmsSim> {
    let mut config = RtmsSimConfig {
        client_id: "test-client".into(),
        client_secret: "test-secret-9c1f".into(),
        ..RtmsSimConfig::default()
    };
    tune(&mut config);
    RtmsSim::start(config).await.expect("start the sim")
}

#[tokio::test]
async fn a_full_session_over_per_type_sockets() {
    let sim = sim(|_| {}).await;
    let stream = sim.add_stream(StreamSpec {
        participants: participants(2),
        frames: 20,
        pace: Pace::Fast,
        transcript_every: 5,
        extra: ExtraMedia {
            video: 2,
            share: 0,
            chat: 1,
        },
        ..StreamSpec::default()
    });
    let (mut sig, reply) = signaling(&sim, &stream, true).await;
    let urls = reply["media_server"]["server_urls"]
        .as_object()
        .expect("server_urls object");
    let keys: BTreeSet<&str> = urls.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["all", "audio", "chat", "deskshare", "transcript", "video"])
    );
    let events: Vec<Value> = [1, 2, 3, 4]
        .map(|t| json!({"event_type": t, "subscribe": true}))
        .into();
    sig.send(json!({"msg_type": 5, "events": events})).await;
    let (audio, a4) = media(
        &url_of(&reply, "audio"),
        &sim,
        &stream,
        1,
        json!({"audio": audio_params()}),
        true,
    )
    .await;
    assert_eq!(a4["status_code"], 0);
    assert_eq!(a4["payload_encrypted"], false);
    assert_eq!(a4["media_params"]["audio"]["sample_rate"], 1);
    assert_eq!(a4["media_params"]["audio"]["codec"], 1);
    let (transcript, t4) = media(
        &url_of(&reply, "transcript"),
        &sim,
        &stream,
        8,
        json!({"transcript": {"content_type": 5}}),
        true,
    )
    .await;
    assert_eq!(t4["media_params"]["transcript"]["content_type"], 5);
    let (video, _) = media(&url_of(&reply, "video"), &sim, &stream, 2, json!({}), true).await;
    let (chat, _) = media(&url_of(&reply, "chat"), &sim, &stream, 16, json!({}), true).await;
    assert!(stream.stats().confirmed_audio.is_some());
    sig.send(json!({"msg_type": 7, "rtms_stream_id": stream.stream_id()}))
        .await;
    let readers = [audio, transcript, video, chat].map(|p| tokio::spawn(p.drain()));
    let (events, sig_end, _) = sig.drain().await;
    let mut kinds = Vec::new();
    for reader in readers {
        let (messages, ended, _) = reader.await.expect("reader");
        assert_eq!(ended, Some(Ended::Close(Some(1000))), "media socket end");
        kinds.push(messages);
    }
    assert_eq!(sig_end, Some(Ended::Close(Some(1000))));
    assert!(stream.wait_done(WAIT).await);

    // Audio: every frame once, in order, 640 bytes of L16 (16 kHz mono 20 ms), the
    // same bytes the sim recorded, 20 ms apart.
    let audio = &kinds[0];
    assert_eq!(audio.len(), 20);
    let sent = stream.sent();
    let sent_audio: Vec<&SentMedia> = sent.iter().filter(|s| s.kind == MediaKind::Audio).collect();
    assert_eq!(sent_audio.len(), 20);
    for (i, (got, rec)) in audio.iter().zip(&sent_audio).enumerate() {
        assert_eq!(got["msg_type"], 14);
        assert_eq!(got["content"]["user_id"], 0, "mixed stream");
        assert_eq!(got["content"]["length"], 640);
        assert_eq!(decode(got), rec.data.to_vec());
        assert_eq!(rec.frame, i as u32);
        assert_eq!(got["content"]["timestamp"], rec.timestamp);
        assert!(!rec.resent);
    }
    let ts: Vec<u64> = audio
        .iter()
        .map(|a| a["content"]["timestamp"].as_u64().expect("ts"))
        .collect();
    assert!(ts.windows(2).all(|w| w[1] == w[0] + 20), "{ts:?}");
    assert!(
        sent_audio[0].data.iter().any(|b| *b != 0),
        "a tone, not silence"
    );

    // Transcripts: 4 segments, rotating speakers, with times and language.
    let transcripts = &kinds[1];
    assert_eq!(transcripts.len(), 4);
    for (n, t) in transcripts.iter().enumerate() {
        let c = &t["content"];
        assert_eq!(t["msg_type"], 17);
        assert_eq!(c["user_id"], 16_000_001 + (n as u32 % 2));
        assert!(!c["data"].as_str().expect("text").is_empty());
        assert!(c["start_time"].as_u64() < c["end_time"].as_u64());
        // Zoom's language number: 9, English, as nothing else was asked for.
        assert_eq!(c["language"], 9);
    }
    assert_eq!(kinds[2].len(), 2);
    assert!(kinds[2]
        .iter()
        .all(|v| v["msg_type"] == 15 && !decode(v).is_empty()));
    assert_eq!(kinds[3].len(), 1);
    assert_eq!(kinds[3][0]["msg_type"], 18);

    // Signaling: started, active, join, first packet, speakers, then the stop sequence.
    let types: Vec<(u64, u64)> = events
        .iter()
        .map(|e| {
            let t = e["msg_type"].as_u64().unwrap_or(0);
            let sub = if t == 6 {
                e["event"]["event_type"].as_u64()
            } else {
                e["state"].as_u64()
            };
            (t, sub.unwrap_or(99))
        })
        .collect();
    let position = |x: (u64, u64)| {
        types
            .iter()
            .position(|t| *t == x)
            .unwrap_or_else(|| panic!("{x:?} missing in {types:?}"))
    };
    let join = &events[position((6, 3))]["event"]["participants"];
    assert_eq!(join.as_array().map(Vec::len), Some(2));
    assert!(position((9, 2)) < position((8, 1)));
    position((6, 1));
    let speakers = types.iter().filter(|t| **t == (6, 2)).count();
    assert_eq!(speakers, 4, "speaker changes every 5 frames: {types:?}");
    let tail: Vec<(u64, u64)> = types[types.len() - 4..].to_vec();
    assert_eq!(tail, vec![(6, 4), (8, 3), (8, 4), (9, 5)]);
    let terminated = &events[events.len() - 2];
    assert_eq!(terminated["reason"], 6);
    assert_eq!(terminated["rtms_stream_id"], stream.stream_id());

    let stats = stream.stats();
    assert_eq!(stats.signaling_handshakes, 1);
    assert_eq!(stats.media_handshakes, 4);
    assert_eq!(stats.ready_acks, 1);
    assert_eq!(stats.subscriptions, vec![1, 2, 3, 4]);
    assert_eq!(stats.audio_frames_sent, 20);
    assert_eq!(stats.transcripts_sent, 4);
    assert_eq!(stats.outcome, Some(StreamOutcome::Completed { reason: 6 }));
    assert_eq!(stats.client_close_codes, vec![1000; 5]);
}

#[tokio::test]
async fn bad_handshakes_are_refused_with_a_status_and_closed() {
    let sim = sim(|_| {}).await;
    let stream = sim.add_stream(StreamSpec::default());

    let mut peer = Peer::connect(&sim.signaling_url(), false).await;
    let mut request = handshake(1, &stream, sim.config());
    request["signature"] = expected_signature(
        "test-client",
        "not-the-secret",
        stream.meeting_uuid(),
        stream.stream_id(),
    )
    .into();
    peer.send(request.clone()).await;
    let reply = peer.expect(2).await;
    assert_eq!(reply["status_code"], status::INVALID_SIGNATURE);
    assert_eq!(reply["sequence"], request["sequence"]);
    assert!(!reply["reason"].as_str().unwrap_or("").is_empty());
    assert!(peer.next().await.is_none());
    assert_eq!(peer.ended, Some(Ended::Close(Some(1008))));

    // Zoom's current status table: 2 unknown stream or id, 4 bad payload (including a
    // protocol version other than 1), 1 wrong message type, 3 signature.
    let cases = [
        (
            "rtms_stream_id",
            json!("nope"),
            status::INVALID_RTMS_STREAM_ID,
        ),
        (
            "meeting_uuid",
            json!("other=="),
            status::INVALID_RTMS_STREAM_ID,
        ),
        ("protocol_version", json!(2), status::INVALID_PAYLOAD),
        ("msg_type", json!(3), status::INVALID_MESSAGE_TYPE),
        ("signature", Value::Null, status::INVALID_SIGNATURE),
        ("meeting_uuid", Value::Null, status::INVALID_PAYLOAD),
    ];
    for (field, value, code) in cases {
        let mut peer = Peer::connect(&sim.signaling_url(), false).await;
        let mut request = handshake(1, &stream, sim.config());
        if value.is_null() {
            request.as_object_mut().map(|o| o.remove(field));
        } else {
            request[field] = value;
        }
        peer.send(request).await;
        let reply = peer.expect(2).await;
        assert_eq!(reply["status_code"], code, "{field}: {reply}");
        let reason = reply["reason"].as_str().unwrap_or("");
        assert!(!reason.is_empty(), "{field}: a reason says why");
        if field == "protocol_version" {
            assert!(reason.contains("protocol_version 2"), "{reason}");
        }
        assert!(peer.next().await.is_none());
    }
    // A media handshake with a bad signature too.
    let mut peer = Peer::connect(&sim.media_url(Some(MediaKind::Audio)), true).await;
    let mut request = handshake(3, &stream, sim.config());
    request["signature"] = json!("00");
    request["media_type"] = 1.into();
    peer.send(request).await;
    assert_eq!(
        peer.expect(4).await["status_code"],
        status::INVALID_SIGNATURE
    );

    let stats = stream.stats();
    assert_eq!(
        stats.rejections,
        vec![(2, 3), (2, 2), (2, 4), (2, 1), (2, 3), (2, 4), (4, 3)],
        "the unknown stream is not this stream's"
    );
    assert_eq!(stats.signaling_handshakes, 0);
    let all = sim.rejections();
    assert_eq!(all.len(), 8);
    assert!(all
        .iter()
        .any(|r| r.stream_id == "nope" && r.status_code == 2));
    // No such endpoint: refused at the upgrade.
    assert!(connect_async(format!("ws://{}/elsewhere", sim.addr()))
        .await
        .is_err());
}

#[tokio::test]
async fn unanswered_keepalives_drop_the_socket_answered_ones_keep_it() {
    let sim = sim(|c| {
        c.keepalive_interval = Duration::from_millis(50);
        c.keepalive_max_missed = 3;
    })
    .await;
    let stream = sim.add_stream(StreamSpec {
        end: End::Hold,
        ..StreamSpec::default()
    });
    let mut notices = sim.notices();
    let (mut good, _) = signaling(&sim, &stream, false).await;
    // Answered with the timestamp alone, as Zoom's samples do: still connected after
    // many keep-alives.
    good.answer_keepalives = false;
    let mut answered = 0;
    while answered < 4 {
        let message = tokio::time::timeout(WAIT, good.ws.next())
            .await
            .expect("wait");
        let Some(Ok(Message::Text(text))) = message else {
            panic!("signaling ended: {message:?}");
        };
        let v: Value = serde_json::from_str(text.as_str()).expect("JSON");
        if v["msg_type"] == 12 {
            good.send(json!({"msg_type": 13, "timestamp": v["timestamp"]}))
                .await;
            answered += 1;
        }
    }
    good.send(json!({"msg_type": 10})).await;
    let state = good.expect(11).await;
    assert_eq!(state["rtms_session_id"], stream.session_id());
    assert!(stream.stats().keepalives_answered >= 3);
    assert_eq!(stream.stats().dropped_for_keepalive, 0);

    // A second signaling handshake while the first socket is open: 8, Zoom allows one.
    let mut second = Peer::connect(&sim.signaling_url(), false).await;
    second.send(handshake(1, &stream, sim.config())).await;
    let reply = second.expect(2).await;
    assert_eq!(reply["status_code"], status::DUPLICATE_SIGNAL_REQUEST);
    // The client's TCP goes away: signaling lost, `rtms_interrupted`.
    drop(good);
    let notice = tokio::time::timeout(WAIT, notices.recv())
        .await
        .expect("a notice")
        .expect("notice");
    assert_eq!(notice.name, "meeting.rtms_interrupted");
    assert_eq!(
        notice.payload,
        json!({"meeting_uuid": stream.meeting_uuid(), "rtms_stream_id": stream.stream_id()})
    );

    // Echoing the sequence with the wrong timestamp does not count: dropped without a
    // close frame (after telling the client the signal connection is interrupted,
    // state 2 with reason 13).
    let (mut bad, _) = signaling(&sim, &stream, false).await;
    bad.answer_keepalives = false;
    let mut interrupted = false;
    loop {
        let message = tokio::time::timeout(WAIT, bad.ws.next())
            .await
            .expect("wait");
        let Some(Ok(Message::Text(text))) = message else {
            break;
        };
        let v: Value = serde_json::from_str(text.as_str()).expect("JSON");
        if v["msg_type"] == 12 {
            let wrong = v["timestamp"].as_u64().unwrap_or(0) + 1;
            bad.send(json!({"msg_type": 13, "sequence": v["sequence"], "timestamp": wrong}))
                .await;
        }
        if v["msg_type"] == 8 && v["state"] == 2 && v["reason"] == 13 {
            interrupted = true;
        }
    }
    assert!(interrupted);
    let notice = tokio::time::timeout(WAIT, notices.recv())
        .await
        .expect("a notice")
        .expect("notice");
    assert_eq!(notice.name, "meeting.rtms_interrupted");
    let stats = stream.stats();
    assert_eq!(stats.dropped_for_keepalive, 1);
    assert_eq!(stats.signaling_interruptions, 2);
    assert!(stats.keepalives_sent >= 7);
    assert!(stats
        .rejections
        .contains(&(2, status::DUPLICATE_SIGNAL_REQUEST)));
}

/// Reads a media socket to its end, re-handshaking after every abrupt drop, until the
/// server closes it. Returns every message and the refusals seen.
pub(crate) async fn read_with_resume(
    sim: &RtmsSim,
    stream: &SimStream,
    url: &str,
    media_type: u64,
    first: Peer,
) -> (Vec<Value>, Vec<u64>, Option<Ended>) {
    let mut peer = first;
    let mut messages = Vec::new();
    let mut refusals = Vec::new();
    loop {
        let (got, ended, _) = peer.drain().await;
        messages.extend(got);
        if ended != Some(Ended::Abrupt) {
            return (messages, refusals, ended);
        }
        loop {
            let (p, reply) = media(
                url,
                sim,
                stream,
                media_type,
                json!({"audio": audio_params()}),
                false,
            )
            .await;
            let code = reply["status_code"].as_u64().unwrap_or(99);
            if code == 0 {
                peer = p;
                break;
            }
            refusals.push(code);
        }
    }
}

#[tokio::test]
async fn dropped_media_resumes_where_it_stopped_and_loses_nothing() {
    let sim = sim(|_| {}).await;
    let stream = sim.add_stream(StreamSpec {
        participants: participants(3),
        frames: 60,
        pace: Pace::Fast,
        data_opt: DataOpt::PerSpeaker,
        faults: vec![
            (19, Fault::DropMedia),
            (39, Fault::DropMedia),
            (39, Fault::Reject(42)),
        ],
        resend_on_resume: 2,
        ..StreamSpec::default()
    });
    let (mut sig, reply) = signaling(&sim, &stream, false).await;
    sig.send(json!({"msg_type": 5, "events": [{"event_type": 7, "subscribe": true}]}))
        .await;
    let url = url_of(&reply, "audio");
    let (audio, a4) = audio_then_ready(&mut sig, &reply, &sim, &stream).await;
    assert_eq!(a4["media_params"]["audio"]["data_opt"], 2);
    let signaling_reader = tokio::spawn(sig.drain());
    let (messages, refusals, ended) = read_with_resume(&sim, &stream, &url, 1, audio).await;
    assert_eq!(ended, Some(Ended::Close(Some(1000))));
    assert_eq!(refusals, vec![42], "the injected refusal, then accepted");

    // 3 speakers x 60 frames, plus 2 frames x 3 speakers re-sent after each resume.
    assert_eq!(messages.len(), 180 + 12);
    let mut seen = BTreeSet::new();
    for m in &messages {
        let c = &m["content"];
        seen.insert((c["user_id"].as_u64(), c["timestamp"].as_u64()));
    }
    assert_eq!(
        seen.len(),
        180,
        "deduped by (user, timestamp): every frame once"
    );
    let sent = stream.sent();
    assert_eq!(sent.iter().filter(|s| !s.resent).count(), 180);
    assert_eq!(sent.iter().filter(|s| s.resent).count(), 12);
    // First sends are in order and contiguous across both drops.
    let firsts: Vec<u64> = sent.iter().filter(|s| !s.resent).map(|s| s.index).collect();
    assert_eq!(firsts, (0..180).collect::<Vec<u64>>());
    // Right after each resume come the re-sent frames 18-19 (then 38-39), then 20.
    let resumed_at = messages
        .iter()
        .position(|m| m["content"]["timestamp"] == messages[60]["content"]["timestamp"])
        .expect("frame 20");
    assert_eq!(resumed_at, 54, "frames 18..20 of 3 speakers came first");
    let stats = stream.stats();
    assert_eq!(stats.media_handshakes, 3);
    assert_eq!(stats.rejections, vec![(4, 42)]);
    assert_eq!(stats.resent, 12);
    let (events, _, _) = signaling_reader.await.expect("signaling");
    let interruptions = events
        .iter()
        .filter(|e| e["msg_type"] == 6 && e["event"]["event_type"] == 7)
        .count();
    assert_eq!(interruptions, 2, "media connection interrupted, twice");
    let states: Vec<(u64, u64)> = events
        .iter()
        .filter(|e| e["msg_type"] == 8)
        .map(|e| {
            (
                e["state"].as_u64().unwrap_or(99),
                e["reason"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    assert_eq!(
        &states[..5],
        &[(1, 0), (2, 14), (1, 0), (2, 14), (1, 0)],
        "interrupted with reason 14, active again once media is back: {states:?}"
    );
}

#[tokio::test]
async fn stop_runs_the_stop_sequence_on_every_socket() {
    let sim = sim(|_| {}).await;
    let stream = sim.add_stream(StreamSpec {
        frames: 100_000,
        end: End::Hold,
        ..StreamSpec::default()
    });
    let (mut sig, reply) = signaling(&sim, &stream, false).await;
    let (mut all, _) = media(
        &url_of(&reply, "all"),
        &sim,
        &stream,
        32,
        json!({"audio": audio_params()}),
        false,
    )
    .await;
    sig.send(json!({"msg_type": 7})).await;
    assert!(stream.wait_ready(WAIT).await);
    // Real time: the first frame arrives, with the wall clock as its timestamp.
    let first = all.expect(14).await;
    let ts = first["content"]["timestamp"].as_u64().unwrap_or(0);
    assert!(ts.abs_diff(crate::util::now_ms()) < 60_000);
    let media_reader = tokio::spawn(all.drain());
    stream.stop(2).await;
    assert!(stream.is_done());
    let (events, ended, _) = sig.drain().await;
    assert_eq!(ended, Some(Ended::Close(Some(1000))));
    let tail: Vec<(Value, Value)> = events[events.len() - 3..]
        .iter()
        .map(|e| (e["msg_type"].clone(), e["state"].clone()))
        .collect();
    assert_eq!(
        tail,
        vec![
            (json!(8), json!(3)),
            (json!(8), json!(4)),
            (json!(9), json!(5))
        ]
    );
    assert_eq!(events[events.len() - 2]["reason"], 2);
    assert_eq!(events[events.len() - 1]["stop_reason"], 2);
    let (_, media_end, _) = media_reader.await.expect("media reader");
    assert_eq!(media_end, Some(Ended::Close(Some(1000))));
    assert_eq!(
        stream.stats().outcome,
        Some(StreamOutcome::Completed { reason: 2 })
    );
    // A finished stream refuses new handshakes.
    let mut late = Peer::connect(&sim.signaling_url(), false).await;
    late.send(handshake(1, &stream, sim.config())).await;
    assert_eq!(
        late.expect(2).await["status_code"],
        status::INVALID_RTMS_STREAM_ID
    );
}

#[tokio::test]
async fn all_only_binary_per_speaker_with_a_confirmed_format_override() {
    let sim = sim(|c| {
        c.media_urls = MediaUrlMode::AllOnly;
        c.binary_frames = true;
    })
    .await;
    let stream = sim.add_stream(StreamSpec {
        participants: participants(2),
        frames: 5,
        pace: Pace::Fast,
        confirm_audio: Some(json!({"sample_rate": 3, "channel": 2})),
        ..StreamSpec::default()
    });
    let (mut sig, reply) = signaling(&sim, &stream, false).await;
    let urls = reply["media_server"]["server_urls"]
        .as_object()
        .expect("urls");
    assert_eq!(urls.keys().collect::<Vec<_>>(), vec!["all"]);
    assert!(sig.binary_frames > 0, "the server writes binary frames");
    assert!(connect_async(sim.media_url(Some(MediaKind::Audio)))
        .await
        .is_err());
    let mut params = audio_params();
    params["data_opt"] = 2.into();
    let (all, a4) = media(
        &url_of(&reply, "all"),
        &sim,
        &stream,
        32,
        json!({"audio": params}),
        false,
    )
    .await;
    let confirmed = &a4["media_params"]["audio"];
    assert_eq!(
        (
            confirmed["sample_rate"].clone(),
            confirmed["channel"].clone(),
            confirmed["data_opt"].clone()
        ),
        (json!(3), json!(2), json!(2))
    );
    sig.send(json!({"msg_type": 7})).await;
    let (messages, ended, all) = all.drain().await;
    assert_eq!(ended, Some(Ended::Close(Some(1000))));
    assert!(all.binary_frames >= 10);
    assert_eq!(messages.len(), 10);
    for pair in messages.chunks(2) {
        assert_eq!(pair[0]["content"]["user_id"], 16_000_001);
        assert_eq!(pair[1]["content"]["user_id"], 16_000_002);
        assert_eq!(
            pair[0]["content"]["timestamp"],
            pair[1]["content"]["timestamp"]
        );
        // 48 kHz stereo 20 ms.
        assert_eq!(decode(&pair[0]).len(), 3840);
        assert_ne!(decode(&pair[0]), decode(&pair[1]), "a distinct tone each");
    }
    assert!(stream.wait_done(WAIT).await);
}

fn write_wav(path: &Path, rate: u32, channels: u16, bits: u16, samples: usize) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("wav");
    for i in 0..samples {
        match bits {
            16 => w.write_sample((i % 3000) as i16 - 1500).expect("sample"),
            _ => w.write_sample((i % 3000) as i32).expect("sample"),
        }
    }
    w.finalize().expect("finalize");
}

#[tokio::test]
async fn a_wav_file_is_streamed_in_its_own_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = dir.path().join("speech.wav");
    // 8 kHz mono, 0.1 s and a bit: 6 frames of 20 ms, the last one padded.
    write_wav(&wav, 8_000, 1, 16, 850);
    let sim = sim(|_| {}).await;
    let stream = sim
        .try_add_stream(StreamSpec {
            frames: 0,
            pace: Pace::Fast,
            audio: AudioSource::Wav(wav.clone()),
            ..StreamSpec::default()
        })
        .expect("a usable WAV");
    assert_eq!(stream.frames(), 6);
    let (_sig, audio, a4) = connect_audio(&sim.signaling_url(), &sim, &stream, false).await;
    assert_eq!(
        a4["media_params"]["audio"]["sample_rate"], 0,
        "8 kHz, the file's rate"
    );
    let (messages, _, _) = audio.drain().await;
    let mut pcm = Vec::new();
    for m in &messages {
        assert_eq!(m["content"]["length"], 320);
        pcm.extend(decode(m));
    }
    let expected: Vec<u8> = (0..850)
        .flat_map(|i| ((i % 3000) as i16 - 1500).to_le_bytes())
        .chain(std::iter::repeat_n(0, 6 * 320 - 1700))
        .collect();
    assert_eq!(pcm, expected);

    // An override that disagrees with the file fails the media handshake, clearly.
    let other = sim.add_stream(StreamSpec {
        audio: AudioSource::Wav(wav),
        confirm_audio: Some(json!({"sample_rate": 3})),
        ..StreamSpec::default()
    });
    let (_sig, reply) = signaling(&sim, &other, false).await;
    let (_, a4) = media(&url_of(&reply, "audio"), &sim, &other, 1, json!({}), false).await;
    assert_eq!(a4["status_code"], status::INVALID_MEDIA_PARAMS);
    let reason = a4["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("speech.wav") && reason.contains("8000 Hz"),
        "{reason}"
    );

    // A 24-bit file is refused up front.
    let deep = dir.path().join("deep.wav");
    write_wav(&deep, 16_000, 1, 24, 100);
    let err = sim
        .try_add_stream(StreamSpec {
            audio: AudioSource::Wav(deep),
            ..StreamSpec::default()
        })
        .expect_err("24-bit");
    assert!(format!("{err:#}").contains("16-bit"), "{err:#}");
}

#[tokio::test]
async fn an_interrupted_stream_is_given_up_after_the_resume_window() {
    let sim = sim(|c| c.resume_window = Duration::from_millis(200)).await;
    let stream = sim.add_stream(StreamSpec {
        end: End::Hold,
        ..StreamSpec::default()
    });
    let (sig, _) = signaling(&sim, &stream, false).await;
    drop(sig);
    assert!(stream.wait_done(WAIT).await);
    assert_eq!(stream.stats().outcome, Some(StreamOutcome::TimedOut));
    // Removed streams are forgotten: a handshake for them is refused.
    assert!(sim.remove_stream(stream.stream_id()).is_some());
    assert!(sim.stream(stream.stream_id()).is_none());
    let mut peer = Peer::connect(&sim.signaling_url(), false).await;
    peer.send(handshake(1, &stream, sim.config())).await;
    assert_eq!(
        peer.expect(2).await["status_code"],
        status::INVALID_RTMS_STREAM_ID
    );
}

#[tokio::test]
async fn pause_close_request_and_signaling_resume() {
    let sim = sim(|_| {}).await;
    let stream = sim.add_stream(StreamSpec {
        frames: 1000,
        pace: Pace::Fast,
        faults: vec![
            (9, Fault::Pause(Duration::from_millis(30))),
            (19, Fault::DropSignaling),
        ],
        end: End::Hold,
        ..StreamSpec::default()
    });
    let (sig, audio, _) = connect_audio(&sim.signaling_url(), &sim, &stream, false).await;
    // Paused after frame 9, resumed, then the signaling socket drops after frame 19
    // (state 2 with reason 13 first), and media with it.
    let (events, ended, _) = sig.drain().await;
    assert_eq!(ended, Some(Ended::Abrupt));
    let states: Vec<(&Value, &Value)> = events
        .iter()
        .filter(|e| e["msg_type"] == 8)
        .map(|e| (&e["state"], &e["reason"]))
        .collect();
    assert_eq!(
        states,
        vec![
            (&json!(1), &json!(0)),
            (&json!(5), &json!(0)),
            (&json!(6), &json!(0)),
            (&json!(2), &json!(13))
        ]
    );
    let (frames, ended, _) = audio.drain().await;
    assert_eq!(ended, Some(Ended::Abrupt), "media goes with signaling");
    assert_eq!(frames.len(), 20);
    for (i, frame) in frames.iter().enumerate() {
        assert_eq!(frame["content"]["timestamp"], stream.sent()[i].timestamp);
    }
    // Media waits for a new signaling handshake, media handshake and ready ack, then
    // continues.
    let (mut sig, mut audio, _) = connect_audio(&sim.signaling_url(), &sim, &stream, true).await;
    assert_eq!(sig.expect(8).await["state"], 1);
    let frame = audio.expect(14).await;
    assert_eq!(frame["content"]["timestamp"], stream.sent()[20].timestamp);
    // The client asks to close: 22, then the stop sequence with reason 20.
    sig.send(json!({"msg_type": 21, "rtms_stream_id": stream.stream_id()}))
        .await;
    assert_eq!(sig.expect(22).await["status_code"], 0);
    let reader = tokio::spawn(audio.drain());
    let (events, _, _) = sig.drain().await;
    assert_eq!(events[events.len() - 2]["state"], 4);
    assert_eq!(events[events.len() - 2]["reason"], 20);
    reader.await.expect("reader");
    assert!(stream.wait_done(WAIT).await);
    assert_eq!(stream.stats().ready_acks, 2);
}

/// Seconds of CPU this process used (user + system), from `/proc/self/stat`.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of the file (utime, stime) are 11 and 12 after the `)`.
    (ticks(11) + ticks(12)) / 100.0
}

/// One lean client: signaling + one audio socket, counts audio frames and how late
/// (wall clock minus timestamp) they arrive.
async fn lean_client(sim: Arc<RtmsSim>, stream: Arc<SimStream>, parse: bool) -> (u64, Vec<u64>) {
    let (sig, audio, _) = connect_audio(&sim.signaling_url(), &sim, &stream, false).await;
    let sig = tokio::spawn(sig.drain());
    let mut ws = audio.ws;
    let (mut frames, mut late) = (0, Vec::new());
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        if !parse {
            frames += u64::from(text.as_str().starts_with("{\"msg_type\":14,"));
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        if v["msg_type"] == 14 {
            frames += 1;
            let ts = v["content"]["timestamp"].as_u64().unwrap_or(0);
            late.push(crate::util::now_ms().saturating_sub(ts));
        }
    }
    let _ = sig.await;
    (frames, late)
}

/// Not a test: prints the simulator's throughput with lean in-process clients.
/// `cargo test --release -p zoomhost --lib sim::rtms::tests::throughput -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test"]
async fn throughput() {
    measure(&[
        ("fast, 1 stream", 1, 50_000, Pace::Fast, true),
        ("fast, 100 streams", 100, 2_000, Pace::Fast, true),
        (
            "fast, 100 streams, counting client",
            100,
            2_000,
            Pace::Fast,
            false,
        ),
        (
            "real time, 200 streams x 5 s",
            200,
            250,
            Pace::RealTime,
            true,
        ),
        (
            "real time, 500 streams x 10 s",
            500,
            500,
            Pace::RealTime,
            true,
        ),
        (
            "real time, 500 streams x 10 s, counting client",
            500,
            500,
            Pace::RealTime,
            false,
        ),
    ])
    .await;
}

/// Not a test: the same on one thread, where CPU time is the work done.
#[tokio::test(flavor = "current_thread")]
#[ignore = "a measurement, not a test"]
async fn throughput_one_thread() {
    measure(&[
        (
            "one thread: fast, 100 streams, counting client",
            100,
            2_000,
            Pace::Fast,
            false,
        ),
        (
            "one thread: real time, 500 streams x 10 s",
            500,
            500,
            Pace::RealTime,
            true,
        ),
        (
            "one thread: real time, 500 streams x 10 s, counting client",
            500,
            500,
            Pace::RealTime,
            false,
        ),
    ])
    .await;
}

async fn measure(runs: &[(&str, usize, u32, Pace, bool)]) {
    let sim = sim(|_| {}).await;
    for &(label, streams, frames, pace, parse) in runs {
        let (cpu, started) = (cpu_seconds(), std::time::Instant::now());
        let clients: Vec<_> = (0..streams)
            .map(|_| {
                let stream = sim.add_stream(StreamSpec {
                    frames,
                    pace,
                    record: false,
                    ..StreamSpec::default()
                });
                tokio::spawn(lean_client(sim.clone(), stream, parse))
            })
            .collect();
        let (mut total, mut late) = (0, Vec::new());
        for client in clients {
            let (n, l) = client.await.expect("client");
            total += n;
            late.extend(l);
        }
        let wall = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu;
        late.sort_unstable();
        let pct = |p: f64| {
            let i = ((late.len() as f64 * p) as usize).min(late.len().saturating_sub(1));
            late.get(i).copied().unwrap_or(0)
        };
        assert_eq!(total, u64::from(frames) * streams as u64);
        let lateness = if pace == Pace::RealTime && parse {
            format!(
                "; lateness p50 {} ms p99 {} ms max {} ms",
                pct(0.5),
                pct(0.99),
                late.last().copied().unwrap_or(0)
            )
        } else {
            String::new()
        };
        println!(
            "{label}: {total} frames in {wall:.2} s = {:.0} frames/s; CPU {cpu:.2} s ({:.0}% of one core, {:.1} us/frame){lateness}",
            total as f64 / wall,
            cpu / wall * 100.0,
            cpu / total as f64 * 1e6,
        );
    }
}
