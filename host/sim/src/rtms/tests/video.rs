//! Individual video (`data_opt` 4): subscriptions (28/29), cameras on and off (events
//! 8/9), and the record of every video frame sent.

use super::*;

const A: u32 = 16_000_001;
const B: u32 = 16_000_002;

/// Video params asking for one participant's video (`data_opt` 4), or the active
/// speaker's (3).
fn video_params(data_opt: u32) -> Value {
    json!({"video": {"content_type": 3, "codec": 7, "resolution": 2, "data_opt": data_opt, "fps": 25}})
}

/// Two participants with their cameras on, a video item every frame, in real time,
/// held open until stopped.
fn held_video() -> StreamSpec {
    StreamSpec {
        participants: participants(2),
        frames: 100_000,
        pace: Pace::RealTime,
        end: End::Hold,
        extra: ExtraMedia {
            video: 100_000,
            ..ExtraMedia::default()
        },
        ..StreamSpec::default()
    }
}

/// The video socket at the signaling `reply`'s video URL asking for
/// [`video_params`]`(data_opt)` (binary frames if `binary`), then the ready ack on `sig`:
/// the video socket and its handshake reply.
async fn video_then_ready(
    sig: &mut Peer,
    reply: &Value,
    sim: &RtmsSim,
    stream: &SimStream,
    data_opt: u32,
    binary: bool,
) -> (Peer, Value) {
    let url = url_of(reply, "video");
    let (video, v4) = media(&url, sim, stream, 2, video_params(data_opt), binary).await;
    sig.send(json!({"msg_type": 7, "rtms_stream_id": stream.stream_id()}))
        .await;
    (video, v4)
}

/// The next signaling message of `msg_type` (others skipped).
async fn next_of(sig: &mut Peer, msg_type: u64) -> Value {
    loop {
        let v = sig.next().await.expect("signaling ended");
        if v["msg_type"] == msg_type {
            return v;
        }
    }
}

/// The next `EVENT_UPDATE` of `event_type` (other messages skipped).
async fn next_event(sig: &mut Peer, event_type: u64) -> Value {
    loop {
        let v = next_of(sig, 6).await;
        if v["event"]["event_type"] == event_type {
            return v["event"].clone();
        }
    }
}

/// Sends `VIDEO_SUBSCRIPTION_REQ` and returns the `VIDEO_SUBSCRIPTION_RESP`.
async fn ask(sig: &mut Peer, user_id: Value, subscribe: bool) -> Value {
    sig.send(json!({"msg_type": 28, "user_id": user_id, "subscribe": subscribe, "timestamp": 1}))
        .await;
    next_of(sig, 29).await
}

fn user_ids(event: &Value) -> Vec<u64> {
    event["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .map(|p| p["user_id"].as_u64().expect("user_id"))
        .collect()
}

/// (user, timestamp, SHA-256 of the payload) of a video message.
fn video_fields(v: &Value) -> (u32, u64, [u8; 32]) {
    assert_eq!(v["msg_type"], 15, "{v}");
    let c = &v["content"];
    (
        c["user_id"].as_u64().expect("user_id") as u32,
        c["timestamp"].as_u64().expect("timestamp"),
        sha2::Sha256::digest(decode(v)).into(),
    )
}

fn recorded(stream: &SimStream) -> Vec<(u32, u64, [u8; 32])> {
    stream
        .video_frames()
        .iter()
        .map(|f| (f.user_id, f.timestamp, f.sha256))
        .collect()
}

/// Polls (hang guard: [`WAIT`]) until `done` holds for the stream's counters.
async fn until(stream: &SimStream, done: impl Fn(&SimStreamStats) -> bool) -> SimStreamStats {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats = stream.stats();
        if done(&stats) {
            return stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out; counters: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

use sha2::Digest as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn individual_video_follows_the_one_subscribed_participant() {
    let sim = sim(|_| {}).await;
    let stream = sim.add_stream(held_video());
    let (mut sig, reply) = signaling(&sim, &stream, false).await;
    let events: Vec<Value> = [8, 9]
        .map(|t| json!({"event_type": t, "subscribe": true}))
        .into();
    sig.send(json!({"msg_type": 5, "events": events})).await;
    // Whose camera is on, announced on subscription: both.
    assert_eq!(
        user_ids(&next_event(&mut sig, 8).await),
        [A, B].map(u64::from)
    );
    let (mut video, v4) = video_then_ready(&mut sig, &reply, &sim, &stream, 4, false).await;
    assert_eq!(v4["status_code"], 0, "{v4}");
    assert_eq!(v4["media_params"]["video"]["data_opt"], 4, "{v4}");

    // No subscription: frames fall due and none goes out.
    let stats = until(&stream, |s| s.video_unwatched >= 5).await;
    assert_eq!(stats.video_sent, 0, "{stats:?}");

    let ok = ask(&mut sig, json!(A), true).await;
    assert_eq!(ok["user_id"], A);
    assert_eq!(
        (ok["status_code"].clone(), ok["reason"].clone()),
        (json!(0), json!("OK"))
    );
    assert!(ok["timestamp"].as_u64().is_some(), "{ok}");
    let mut got = Vec::new();
    for _ in 0..5 {
        let v = video.next().await.expect("video");
        let (user, _, _) = video_fields(&v);
        assert_eq!(user, A);
        let n = got.len() as u64;
        let text = String::from_utf8(decode(&v)).expect("fake payload");
        assert!(
            text.starts_with(&format!("sim-video-{A}-frame-")),
            "{text} ({n})"
        );
        got.push(v);
    }
    // The same participant again: 44, and nothing changes.
    let duplicate = ask(&mut sig, json!(A), true).await;
    assert_eq!(duplicate["status_code"], 44, "{duplicate}");
    // Someone not in the meeting: refused with a reason, the subscription stays.
    let unknown = ask(&mut sig, json!(999), true).await;
    assert_eq!(unknown["status_code"], 4, "{unknown}");
    assert!(
        unknown["reason"].as_str().unwrap_or("").contains("999"),
        "{unknown}"
    );
    assert_eq!(stream.stats().video_subscription, Some(A));
    // Without a user_id: refused.
    let missing = ask(&mut sig, Value::Null, true).await;
    assert_eq!(missing["status_code"], 4, "{missing}");

    // B replaces A: from B's first frame on, only B's.
    let switched = ask(&mut sig, json!(B.to_string()), true).await;
    assert_eq!(switched["status_code"], 0, "{switched}");
    let mut after_switch = 0;
    while after_switch < 5 {
        let v = video.next().await.expect("video");
        let (user, _, _) = video_fields(&v);
        if after_switch > 0 || user == B {
            assert_eq!(user, B, "A's video after B's");
            after_switch += 1;
        } else {
            assert_eq!(user, A);
        }
        got.push(v);
    }

    // subscribe: false stops video.
    let stop = ask(&mut sig, json!(B), false).await;
    assert_eq!(stop["status_code"], 0, "{stop}");
    let base = stream.stats().video_unwatched;
    // A batch planned before the request is committed before the socket plans again.
    let stats = until(&stream, |s| s.video_unwatched >= base + 2).await;
    let sent = stats.video_sent;
    until(&stream, |s| s.video_unwatched >= base + 10).await;
    assert_eq!(
        stream.stats().video_sent,
        sent,
        "video after subscribe: false"
    );
    assert_eq!(stream.stats().video_subscription, None);

    stream.stop(6).await;
    let (rest, ended, _) = video.drain().await;
    assert_eq!(ended, Some(Ended::Close(Some(1000))));
    got.extend(rest);
    // What the client got is what the sim recorded, frame for frame.
    let received: Vec<_> = got.iter().map(video_fields).collect();
    assert_eq!(received.len() as u64, sent);
    assert_eq!(received, recorded(&stream));
    let requests: Vec<(u32, bool, u32)> = stream
        .stats()
        .video_requests
        .iter()
        .map(|r| (r.user_id, r.subscribe, r.status_code))
        .collect();
    assert_eq!(
        requests,
        [
            (A, true, 0),
            (A, true, 44),
            (999, true, 4),
            (0, true, 4),
            (B, true, 0),
            (B, false, 0)
        ]
    );
}

#[tokio::test]
async fn a_camera_turning_off_stops_the_subscribed_video_and_events_8_9_say_so() {
    let sim = sim(|_| {}).await;
    // A's camera: frames 0-39 and from 80 on; B's: always. One video item per frame.
    let stream = sim.add_stream(StreamSpec {
        participants: participants(2),
        frames: 120,
        pace: Pace::Fast,
        extra: ExtraMedia {
            video: 120,
            ..ExtraMedia::default()
        },
        cameras: Some(vec![
            CameraOn::between(A, 0, 40),
            CameraOn {
                user_id: A,
                from_frame: 80,
                until_frame: None,
            },
            CameraOn::always(B),
        ]),
        ..StreamSpec::default()
    });
    let (mut sig, reply) = signaling(&sim, &stream, true).await;
    let events: Vec<Value> = [8, 9]
        .map(|t| json!({"event_type": t, "subscribe": true}))
        .into();
    sig.send(json!({"msg_type": 5, "events": events})).await;
    assert_eq!(
        user_ids(&next_event(&mut sig, 8).await),
        [A, B].map(u64::from)
    );
    // Subscribed before the video socket exists: the subscription waits for it.
    assert_eq!(ask(&mut sig, json!(A), true).await["status_code"], 0);
    let (video, v4) = video_then_ready(&mut sig, &reply, &sim, &stream, 4, true).await;
    assert_eq!(v4["status_code"], 0, "{v4}");
    let reader = tokio::spawn(video.drain());
    let (messages, _, _) = sig.drain().await;
    let (frames, ended, _) = reader.await.expect("reader");
    assert_eq!(ended, Some(Ended::Close(Some(1000))));
    assert!(stream.wait_done(WAIT).await);

    // A's frames while A's camera was on, and nothing else.
    let received: Vec<_> = frames.iter().map(video_fields).collect();
    assert_eq!(received.len(), 80);
    assert!(received.iter().all(|(user, _, _)| *user == A));
    let indexes: Vec<u64> = stream.video_frames().iter().map(|f| f.index).collect();
    let expected: Vec<u64> = (0..40).chain(80..120).collect();
    assert_eq!(indexes, expected);
    assert_eq!(received, recorded(&stream));
    let stats = stream.stats();
    assert_eq!((stats.video_sent, stats.video_unwatched), (80, 40));

    // Events: A's camera off at frame 40, on again at frame 80, stamped with those
    // frames' timestamps.
    let camera_events: Vec<(u64, Vec<u64>, u64)> = messages
        .iter()
        .filter(|m| m["msg_type"] == 6 && matches!(m["event"]["event_type"].as_u64(), Some(8 | 9)))
        .map(|m| {
            let e = &m["event"];
            (
                e["event_type"].as_u64().expect("event_type"),
                user_ids(e),
                e["timestamp"].as_u64().expect("timestamp"),
            )
        })
        .collect();
    let ts_of = |frame: u64| {
        let first = stream.video_frames()[0].timestamp;
        first + frame * 20
    };
    assert_eq!(
        camera_events,
        [
            (9, vec![u64::from(A)], ts_of(40)),
            (8, vec![u64::from(A)], ts_of(80))
        ]
    );
}

#[tokio::test]
async fn a_subscription_needs_individual_video_and_a_new_signaling_session_asks_again() {
    let sim = sim(|_| {}).await;
    let stream = sim.add_stream(held_video());
    // Active speaker video (data_opt 3): a subscription is refused with 29, and video
    // flows as before, the speaker's.
    let (mut sig, reply) = signaling(&sim, &stream, false).await;
    let (mut video, _) = video_then_ready(&mut sig, &reply, &sim, &stream, 3, false).await;
    let refused = ask(&mut sig, json!(A), true).await;
    assert_eq!(refused["status_code"], 29, "{refused}");
    let v = video.next().await.expect("active speaker video");
    assert_eq!(
        String::from_utf8(decode(&v)).expect("payload"),
        format!("sim-video-frame-{}", stream.video_frames()[0].index)
    );
    assert_eq!(stream.stats().video_unwatched, 0);
    stream.stop(6).await;

    // Individual video: a subscription ends with its signaling session.
    let stream = sim.add_stream(held_video());
    let (mut sig, reply) = signaling(&sim, &stream, false).await;
    let (_video, _) = video_then_ready(&mut sig, &reply, &sim, &stream, 4, false).await;
    assert_eq!(ask(&mut sig, json!(A), true).await["status_code"], 0);
    until(&stream, |s| s.video_sent >= 3).await;
    stream.inject(Fault::DropSignaling);
    let (_, ended, _) = sig.drain().await;
    assert_eq!(ended, Some(Ended::Abrupt));
    let (mut sig, reply) = signaling(&sim, &stream, false).await;
    assert_eq!(stream.stats().video_subscription, None);
    let (_video, _) = video_then_ready(&mut sig, &reply, &sim, &stream, 4, false).await;
    let base = until(&stream, |s| s.ready_acks >= 1 && s.video_unwatched > 0).await;
    until(&stream, |s| s.video_unwatched >= base.video_unwatched + 5).await;
    assert_eq!(
        stream.stats().video_sent,
        base.video_sent,
        "no video before asking again"
    );
    // Asked again: A, not a duplicate.
    assert_eq!(ask(&mut sig, json!(A), true).await["status_code"], 0);
    until(&stream, |s| s.video_sent >= base.video_sent + 3).await;
    stream.stop(6).await;
}
