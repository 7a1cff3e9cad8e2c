//! Zoom's failure contract, one reaction per test, against a hand-driven client: failover
//! to a second server, signaling and media losses with their notices and events, the
//! 60/65 s windows (scaled down), keep-alives, the audio buffer and `buffer_data`,
//! duplicate connections, product id keys, chaos mode, and a stream taken over by
//! another client after its own vanished.

use super::*;
use tokio::sync::broadcast;

/// The next notice; fails after [`WAIT`].
async fn notice(rx: &mut broadcast::Receiver<SimNotice>) -> SimNotice {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a notice in time")
        .expect("the notice channel")
}

/// The SHA-256 of the audio payloads of `messages`.
fn hashes(messages: &[Value]) -> Vec<[u8; 32]> {
    use sha2::{Digest, Sha256};
    messages
        .iter()
        .filter(|m| m["msg_type"] == 14)
        .map(|m| Sha256::digest(decode(m)).into())
        .collect()
}

fn fast_faults(sim_tune: impl FnOnce(&mut RtmsSimConfig)) -> impl FnOnce(&mut RtmsSimConfig) {
    move |c| {
        c.flush_grace = Duration::from_millis(20);
        sim_tune(c);
    }
}

#[tokio::test]
async fn a_failover_moves_the_stream_to_a_second_server_and_re_announces_it() {
    let sim = sim(fast_faults(|_| {})).await;
    let mut notices = sim.notices();
    let stream = sim.add_stream(StreamSpec {
        frames: 60,
        pace: Pace::Fast,
        faults: vec![(19, Fault::Failover), (39, Fault::Failover)],
        ..StreamSpec::default()
    });
    let first_url = stream.signaling_url();
    assert_eq!(first_url, sim.signaling_url());
    let (sig, audio, _) = connect_audio(&first_url, &sim, &stream, false).await;
    let (got, ended, _) = audio.drain().await;
    assert_eq!(
        ended,
        Some(Ended::Abrupt),
        "the server died: no close frame"
    );
    let (_, sig_end, _) = sig.drain().await;
    assert_eq!(sig_end, Some(Ended::Abrupt));
    let mut received = got;

    let mut last_ts = 0;
    for generation in 1..=2u32 {
        // Zoom re-announces the stream: same ids, the new server's URL, a newer event_ts.
        let started = notice(&mut notices).await;
        assert_eq!(started.name, "meeting.rtms_started");
        assert_eq!(started.payload["meeting_uuid"], stream.meeting_uuid());
        assert_eq!(started.payload["rtms_stream_id"], stream.stream_id());
        let url = started.payload["server_urls"]
            .as_str()
            .expect("server_urls")
            .to_string();
        assert_eq!(url, stream.signaling_url());
        let port = sim.addrs()[(generation % 2) as usize].port();
        assert_eq!(
            url,
            format!("ws://127.0.0.1:{port}/g{generation}/signaling"),
            "another port, another path"
        );
        assert!(started.event_ts > last_ts);
        last_ts = started.event_ts;

        // The old server is dead for this stream: a handshake there gets no answer.
        let old = if generation == 1 {
            sim.signaling_url()
        } else {
            format!("ws://127.0.0.1:{}/g1/signaling", sim.addrs()[1].port())
        };
        let mut stale = Peer::connect(&old, false).await;
        stale.send(handshake(1, &stream, sim.config())).await;
        assert!(stale.next().await.is_none());
        assert_eq!(stale.ended, Some(Ended::Abrupt));

        // The new one serves it, media URLs included.
        let (sig, audio, _) = connect_audio(&url, &sim, &stream, false).await;
        let (got, ended, _) = audio.drain().await;
        received.extend(got);
        if generation == 1 {
            assert_eq!(ended, Some(Ended::Abrupt));
        } else {
            assert_eq!(ended, Some(Ended::Close(Some(1000))), "the stream's end");
        }
        drop(sig);
    }
    // Every frame once, in order, across both failovers: what the simulator recorded.
    assert_eq!(received.len(), 60);
    assert_eq!(hashes(&received), stream.audio_hashes_sent());
    let stats = stream.stats();
    assert_eq!(stats.failovers, 2);
    assert_eq!(stats.stale_handshakes, 2);
    assert_eq!(stats.signaling_handshakes, 3);
}

#[tokio::test]
async fn a_signaling_loss_takes_media_along_then_the_window_ends_it_with_19() {
    let sim = sim(fast_faults(|c| {
        c.resume_window = Duration::from_millis(300)
    }))
    .await;
    let mut notices = sim.notices();
    let stream = sim.add_stream(StreamSpec {
        frames: 40,
        pace: Pace::Fast,
        faults: vec![(9, Fault::DropSignaling)],
        ..StreamSpec::default()
    });
    let (sig, audio, _) = connect_audio(&sim.signaling_url(), &sim, &stream, false).await;
    let (events, sig_end, _) = sig.drain().await;
    assert_eq!(sig_end, Some(Ended::Abrupt));
    // Told first: stream state INTERRUPTED, reason 13 (signal connection interrupted).
    let last = events.last().expect("events");
    assert_eq!((&last["msg_type"], &last["state"]), (&json!(8), &json!(2)));
    assert_eq!(last["reason"], 13);
    let (frames, media_end, _) = audio.drain().await;
    assert_eq!(media_end, Some(Ended::Abrupt), "media goes with signaling");
    assert_eq!(frames.len(), 10);

    let interrupted = notice(&mut notices).await;
    assert_eq!(interrupted.name, "meeting.rtms_interrupted");
    assert_eq!(
        interrupted.payload,
        json!({"meeting_uuid": stream.meeting_uuid(), "rtms_stream_id": stream.stream_id()}),
        "ids only, no server_urls"
    );
    // Nobody comes back within the signaling window: stop reason 19.
    let stopped = notice(&mut notices).await;
    assert_eq!(stopped.name, "meeting.rtms_stopped");
    assert_eq!(stopped.payload["stop_reason"], 19);
    assert!(stopped.event_ts > interrupted.event_ts);
    assert!(stream.wait_done(WAIT).await);
    assert_eq!(stream.stats().outcome, Some(StreamOutcome::TimedOut));
}

#[tokio::test]
async fn a_media_loss_sends_event_7_unasked_then_the_media_window_ends_it_with_19() {
    let sim = sim(fast_faults(|c| c.media_window = Duration::from_millis(300))).await;
    let mut notices = sim.notices();
    let stream = sim.add_stream(StreamSpec {
        frames: 40,
        pace: Pace::Fast,
        faults: vec![(9, Fault::DropMedia)],
        ..StreamSpec::default()
    });
    // No event subscription at all.
    let (sig, audio, _) = connect_audio(&sim.signaling_url(), &sim, &stream, false).await;
    let (frames, media_end, _) = audio.drain().await;
    assert_eq!(media_end, Some(Ended::Abrupt));
    assert_eq!(frames.len(), 10);
    let (events, sig_end, _) = sig.drain().await;
    assert_eq!(sig_end, Some(Ended::Close(Some(1000))));
    let first_packet: Vec<&Value> = events
        .iter()
        .filter(|e| e["msg_type"] == 6 && e["event"]["event_type"] == 1)
        .collect();
    assert_eq!(first_packet.len(), 1, "event 1 unasked");
    assert_eq!(
        first_packet[0]["event"]["timestamp"],
        frames[0]["content"]["timestamp"]
    );
    let lost: Vec<&Value> = events
        .iter()
        .filter(|e| e["msg_type"] == 6 && e["event"]["event_type"] == 7)
        .collect();
    assert_eq!(lost.len(), 1, "event 7 unasked: {events:?}");
    assert_eq!(lost[0]["event"]["media_type"], 1, "the audio socket");
    assert!(events
        .iter()
        .any(|e| e["msg_type"] == 8 && e["state"] == 2 && e["reason"] == 14));
    let terminated = &events[events.len() - 2];
    assert_eq!(
        (&terminated["state"], &terminated["reason"]),
        (&json!(4), &json!(19))
    );
    // No rtms_interrupted for a media loss; rtms_stopped with 19 at the end.
    let stopped = notice(&mut notices).await;
    assert_eq!(stopped.name, "meeting.rtms_stopped");
    assert_eq!(stopped.payload["stop_reason"], 19);
    assert_eq!(stream.stats().media_interruptions, 1);
}

#[tokio::test]
async fn a_stop_fault_sends_rtms_stopped_named_for_the_product() {
    let sim = sim(fast_faults(|_| {})).await;
    let mut notices = sim.notices();
    let stream = sim.add_stream(StreamSpec {
        product: Product::ContactCenter,
        frames: 40,
        pace: Pace::Fast,
        faults: vec![(9, Fault::Stop(22))],
        ..StreamSpec::default()
    });
    // The product's id key works in handshakes as well as `meeting_uuid`.
    let mut sig = Peer::connect(&sim.signaling_url(), false).await;
    let mut request = handshake(1, &stream, sim.config());
    let id = request
        .as_object_mut()
        .and_then(|o| o.remove("meeting_uuid"))
        .expect("id");
    request["engagement_id"] = id;
    sig.send(request).await;
    let reply = sig.expect(2).await;
    assert_eq!(reply["status_code"], 0, "{reply}");
    let (audio, _) = audio_then_ready(&mut sig, &reply, &sim, &stream).await;
    let (events, _, _) = sig.drain().await;
    let (frames, _, _) = audio.drain().await;
    assert_eq!(frames.len(), 10);
    assert_eq!(events[events.len() - 2]["reason"], 22);
    let stopped = notice(&mut notices).await;
    assert_eq!(stopped.name, "contact_center.voice_rtms_stopped");
    assert_eq!(
        stopped.payload,
        json!({"engagement_id": stream.meeting_uuid(), "rtms_stream_id": stream.stream_id(), "stop_reason": 22})
    );
    assert_eq!(
        stream.stats().outcome,
        Some(StreamOutcome::Completed { reason: 22 })
    );
    // Ends the caller asked for are the caller's to announce: no notice for them.
    let other = sim.add_stream(StreamSpec {
        end: End::Hold,
        ..StreamSpec::default()
    });
    other.stop(6).await;
    assert!(notices.try_recv().is_err());
}

#[tokio::test]
async fn duplicate_connections_get_8_and_16_while_the_first_is_open() {
    let sim = sim(|_| {}).await;
    let stream = sim.add_stream(StreamSpec {
        end: End::Hold,
        ..StreamSpec::default()
    });
    let (_sig, reply) = signaling(&sim, &stream, false).await;
    let mut second = Peer::connect(&sim.signaling_url(), false).await;
    second.send(handshake(1, &stream, sim.config())).await;
    let r = second.expect(2).await;
    assert_eq!(r["status_code"], status::DUPLICATE_SIGNAL_REQUEST);
    assert!(r["reason"]
        .as_str()
        .unwrap_or("")
        .contains("duplicate signal request"));
    let url = url_of(&reply, "audio");
    let params = json!({"audio": audio_params()});
    let (_audio, a4) = media(&url, &sim, &stream, 1, params.clone(), false).await;
    assert_eq!(a4["status_code"], 0);
    let (_, again) = media(&url, &sim, &stream, 1, params.clone(), false).await;
    assert_eq!(
        again["status_code"],
        status::DUPLICATE_MEDIA_DATA_CONNECTION
    );
    // Through `all` too: audio is taken.
    let (_, all) = media(&url_of(&reply, "all"), &sim, &stream, 32, params, false).await;
    assert_eq!(all["status_code"], status::DUPLICATE_MEDIA_DATA_CONNECTION);
    assert_eq!(stream.stats().media_handshakes, 1);
}

#[tokio::test]
async fn a_webinar_accepts_its_own_key_or_meeting_uuid_with_the_signature_over_the_id() {
    let sim = sim(|_| {}).await;
    let stream = sim.add_stream(StreamSpec {
        product: Product::Webinar,
        end: End::Hold,
        ..StreamSpec::default()
    });
    for key in ["webinar_uuid", "meeting_uuid"] {
        let mut peer = Peer::connect(&sim.signaling_url(), false).await;
        let mut request = handshake(1, &stream, sim.config());
        let id = request
            .as_object_mut()
            .and_then(|o| o.remove("meeting_uuid"))
            .expect("id");
        request[key] = id;
        peer.send(request).await;
        assert_eq!(peer.expect(2).await["status_code"], 0, "{key}");
        drop(peer);
        // Wait until the server saw the first socket go, or the next one is a duplicate.
        let deadline = tokio::time::Instant::now() + WAIT;
        while stream.stats().signaling_interruptions == 0 && key == "webinar_uuid" {
            assert!(tokio::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // Another product's key is not this stream's.
    let mut peer = Peer::connect(&sim.signaling_url(), false).await;
    let mut request = handshake(1, &stream, sim.config());
    let id = request
        .as_object_mut()
        .and_then(|o| o.remove("meeting_uuid"))
        .expect("id");
    request["call_id"] = id;
    peer.send(request).await;
    assert_eq!(peer.expect(2).await["status_code"], status::INVALID_PAYLOAD);
}

#[tokio::test]
async fn media_gets_keepalives_only_while_idle_and_missed_ones_are_a_media_loss() {
    let sim = sim(fast_faults(|c| {
        c.keepalive_interval = Duration::from_millis(40);
        c.keepalive_max_missed = 3;
    }))
    .await;
    let stream = sim.add_stream(StreamSpec {
        frames: 25,
        pace: Pace::RealTime,
        end: End::Hold,
        ..StreamSpec::default()
    });
    let (mut sig, mut audio, _) = connect_audio(&sim.signaling_url(), &sim, &stream, false).await;
    // Signaling answers its keep-alives while the test reads media.
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(v) = sig.next().await {
            if events_tx.send(v).is_err() {
                return;
            }
        }
    });
    for n in 0..25 {
        let v = audio.next().await;
        assert!(
            v.is_some(),
            "frame {n}: {:?} {:?}",
            audio.ended,
            stream.stats()
        );
    }
    assert_eq!(audio.keepalives, 0, "no keep-alives while media flows");
    // Idle now: keep-alives come (and are answered while reading).
    let deadline = tokio::time::Instant::now() + WAIT;
    while audio.keepalives < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no keep-alives while idle"
        );
        let _ = tokio::time::timeout(Duration::from_millis(100), audio.next()).await;
    }
    assert!(stream.stats().keepalives_answered >= 1);
    stream.inject(Fault::MissKeepAlives(SocketKind::Media));
    let (_, ended, _) = audio.drain().await;
    assert_eq!(ended, Some(Ended::Abrupt));
    // The reaction: event 7 for the audio socket (and state 2 with reason 14).
    loop {
        let v = tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("in time")
            .expect("signaling stays");
        if v["msg_type"] == 6 && v["event"]["event_type"] == 7 {
            assert_eq!(v["event"]["media_type"], 1);
            break;
        }
    }
    let stats = stream.stats();
    assert_eq!(stats.dropped_for_keepalive, 1);
    assert_eq!(stats.media_interruptions, 1);
    assert_eq!(stats.signaling_interruptions, 0);
}

#[tokio::test]
async fn audio_made_before_the_client_connects_is_replayed_unless_buffer_data_is_false() {
    let sim = sim(|_| {}).await;
    for buffer_data in [true, false] {
        let stream = sim.add_stream(StreamSpec {
            frames: 40,
            pace: Pace::RealTime,
            ..StreamSpec::default()
        });
        // Zoom produces from rtms_started on; the client takes 300 ms to come.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut sig = Peer::connect(&sim.signaling_url(), false).await;
        let mut request = handshake(1, &stream, sim.config());
        request["buffer_data"] = buffer_data.into();
        sig.send(request).await;
        let reply = sig.expect(2).await;
        let (audio, _) = audio_then_ready(&mut sig, &reply, &sim, &stream).await;
        let (frames, _, _) = audio.drain().await;
        let records = stream.audio_frames();
        assert_eq!(records.len(), 40, "every frame has a fate");
        assert_eq!(hashes(&frames), stream.audio_hashes_sent());
        let dropped = records
            .iter()
            .filter(|r| r.fate == FrameFate::Dropped)
            .count();
        let first_ts = frames[0]["content"]["timestamp"].as_u64().expect("ts");
        if buffer_data {
            assert_eq!(dropped, 0);
            assert_eq!(frames.len(), 40);
            assert_eq!(first_ts, records[0].timestamp, "frame 0, its own timestamp");
        } else {
            // At least the frames of the 300 ms before the connection (15), and only
            // from the start.
            assert!(dropped >= 15, "{dropped}");
            assert!(records[..dropped]
                .iter()
                .all(|r| r.fate == FrameFate::Dropped));
            assert_eq!(frames.len(), 40 - dropped);
            assert_eq!(stream.stats().audio_dropped, dropped as u64);
        }
        drop(sig);
    }
}

#[tokio::test]
async fn audio_outliving_the_buffer_is_dropped_and_video_is_never_buffered() {
    let sim = sim(fast_faults(|c| {
        c.audio_buffer = Duration::from_millis(200);
        c.media_window = Duration::from_secs(10);
    }))
    .await;
    let stream = sim.add_stream(StreamSpec {
        frames: 60,
        pace: Pace::RealTime,
        faults: vec![(10, Fault::DropMedia)],
        extra: ExtraMedia {
            video: 30,
            ..ExtraMedia::default()
        },
        end: End::Hold,
        ..StreamSpec::default()
    });
    let (sig, reply) = signaling(&sim, &stream, false).await;
    let audio_url = url_of(&reply, "audio");
    let video_url = url_of(&reply, "video");
    let params = json!({"audio": audio_params()});
    let (audio, _) = media(&audio_url, &sim, &stream, 1, params.clone(), false).await;
    let (video, _) = media(&video_url, &sim, &stream, 2, json!({}), false).await;
    let mut sig = sig;
    sig.send(json!({"msg_type": 7})).await;
    let (first, ended, _) = audio.drain().await;
    assert_eq!(ended, Some(Ended::Abrupt));
    let (first_video, _, _) = video.drain().await;
    // Away for 600 ms: longer than the 200 ms audio buffer.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (mut audio, _) = media(&audio_url, &sim, &stream, 1, params, false).await;
    let (mut video, _) = media(&video_url, &sim, &stream, 2, json!({}), false).await;
    let mut rest = Vec::new();
    while stream.audio_frames().len() < 60 {
        rest.push(audio.expect(14).await);
    }
    let mut received = first;
    received.extend(rest);
    let stats = stream.stats();
    assert!(stats.audio_dropped >= 15, "{stats:?}");
    assert_eq!(received.len() as u64, 60 - stats.audio_dropped);
    assert_eq!(hashes(&received), stream.audio_hashes_sent());
    // Video produced while nobody could receive it is gone, not replayed.
    assert!(stats.video_dropped >= 5, "{stats:?}");
    let mut videos = first_video.len() as u64;
    while videos + stats.video_dropped < 30 {
        video.expect(15).await;
        videos += 1;
    }
    assert_eq!(stream.stats().video_sent + stream.stats().video_dropped, 30);
}

#[tokio::test]
async fn held_media_is_replayed_with_its_original_timestamps() {
    let sim = sim(|_| {}).await;
    let stream = sim.add_stream(StreamSpec {
        frames: 40,
        pace: Pace::RealTime,
        faults: vec![(9, Fault::HoldMedia(Duration::from_millis(200)))],
        ..StreamSpec::default()
    });
    let (_sig, audio, _) = connect_audio(&sim.signaling_url(), &sim, &stream, false).await;
    let (frames, _, _) = audio.drain().await;
    assert_eq!(frames.len(), 40);
    let ts: Vec<u64> = frames
        .iter()
        .map(|f| f["content"]["timestamp"].as_u64().expect("ts"))
        .collect();
    assert!(ts.windows(2).all(|w| w[1] == w[0] + 20), "{ts:?}");
    assert_eq!(hashes(&frames), stream.audio_hashes_sent());
}

#[tokio::test]
async fn chaos_injects_its_scenarios_into_every_live_stream_until_turned_off() {
    let sim = sim(fast_faults(|_| {})).await;
    let mut notices = sim.notices();
    let streams: Vec<Arc<SimStream>> = (0..2)
        .map(|_| {
            sim.add_stream(StreamSpec {
                end: End::Hold,
                frames: 1_000_000,
                pace: Pace::RealTime,
                ..StreamSpec::default()
            })
        })
        .collect();
    let mut clients = Vec::new();
    for stream in &streams {
        let (sig, audio, _) = connect_audio(&sim.signaling_url(), &sim, stream, false).await;
        clients.push((sig, audio));
        assert!(stream.wait_ready(WAIT).await);
    }
    // A stream that is not connected gets nothing.
    let idle = sim.add_stream(StreamSpec {
        end: End::Hold,
        ..StreamSpec::default()
    });
    let chaos = RtmsChaos {
        interval: Duration::from_millis(100),
        ..RtmsChaos::parse("failover").expect("a scenario name")
    };
    sim.set_chaos(Some(chaos));
    for _ in 0..2 {
        assert_eq!(notice(&mut notices).await.name, "meeting.rtms_started");
    }
    sim.set_chaos(None);
    // Nobody reconnected, so no stream is live: later rounds would skip them anyway.
    let log = sim.chaos_log();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log
        .iter()
        .all(|i| i.scenario == ChaosScenario::Failover && i.round == 1));
    let ids: BTreeSet<&str> = log.iter().map(|i| i.stream_id.as_str()).collect();
    assert!(!ids.contains(idle.stream_id()));
    for stream in &streams {
        assert_eq!(stream.stats().failovers, 1);
    }
    assert!(RtmsChaos::parse("failover,nonsense")
        .expect_err("unknown name")
        .to_string()
        .contains("signaling-loss"));
}

#[tokio::test]
async fn local_zoom_sends_the_notices_on_its_event_websocket() {
    use crate::events::{EventSim, EventSimConfig, TokenCheck};
    let authority = Arc::new(TokenCheck(|t: &str| t == "tok"));
    let events = EventSim::start(EventSimConfig::default(), authority)
        .await
        .expect("event sim");
    let sim = sim(fast_faults(|_| {})).await;
    // What `LocalZoom` runs.
    tokio::spawn(crate::forward_notices(sim.notices(), events.clone()));
    let url = format!("{}?subscriptionId=s&access_token=tok", events.url());
    let (mut ws, _) = connect_async(url).await.expect("event WebSocket");
    assert!(events.wait_connected(WAIT).await);
    let stream = sim.add_stream(StreamSpec {
        product: Product::VideoSdk,
        end: End::Hold,
        ..StreamSpec::default()
    });
    stream.inject(Fault::Failover);
    let (name, payload) = loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("an event in time")
            .expect("open")
            .expect("a frame");
        let Message::Text(text) = message else {
            continue;
        };
        let envelope: Value = serde_json::from_str(text.as_str()).expect("JSON");
        if envelope["module"] != "message" {
            continue;
        }
        let body: Value =
            serde_json::from_str(envelope["content"].as_str().expect("content")).expect("JSON");
        break (body["event"].clone(), body["payload"].clone());
    };
    assert_eq!(name, "session.rtms_started");
    assert_eq!(payload["session_id"], stream.meeting_uuid());
    assert!(
        payload["session_key"].is_string(),
        "Video SDK adds session_key"
    );
    assert_eq!(payload["server_urls"], stream.signaling_url());
    assert_eq!(events.sent().len(), 1);
}

#[tokio::test]
async fn missed_signaling_keepalives_are_a_signaling_loss() {
    let sim = sim(fast_faults(|c| {
        c.keepalive_interval = Duration::from_millis(40);
    }))
    .await;
    let mut notices = sim.notices();
    let stream = sim.add_stream(StreamSpec {
        frames: 100_000,
        pace: Pace::RealTime,
        end: End::Hold,
        ..StreamSpec::default()
    });
    let (sig, audio, _) = connect_audio(&sim.signaling_url(), &sim, &stream, false).await;
    let media_reader = tokio::spawn(audio.drain());
    let sig_reader = tokio::spawn(sig.drain());
    assert!(stream.wait_ready(WAIT).await);
    stream.inject(Fault::MissKeepAlives(SocketKind::Signaling));
    let (events, ended, _) = sig_reader.await.expect("signaling");
    assert_eq!(ended, Some(Ended::Abrupt));
    let last = events.last().expect("events");
    assert_eq!((&last["state"], &last["reason"]), (&json!(2), &json!(13)));
    let (_, media_end, _) = media_reader.await.expect("media");
    assert_eq!(media_end, Some(Ended::Abrupt), "media goes with signaling");
    assert_eq!(notice(&mut notices).await.name, "meeting.rtms_interrupted");
    assert_eq!(stream.stats().dropped_for_keepalive, 1);
}

#[tokio::test]
async fn another_client_resumes_a_stream_whose_client_vanished_and_gets_the_buffered_audio() {
    // A cluster worker dies (no close frame on any socket) and another process takes
    // its stream over within the signaling window, as Zoom allows.
    let sim = sim(|_| {}).await;
    let mut notices = sim.notices();
    let stream = sim.add_stream(StreamSpec {
        frames: 60,
        pace: Pace::RealTime,
        ..StreamSpec::default()
    });
    let (sig, mut audio, _) = connect_audio(&sim.signaling_url(), &sim, &stream, false).await;
    let mut before = 0;
    while before < 10 {
        let v = audio.next().await.expect("audio before the crash");
        if v["msg_type"] == 14 {
            before += 1;
        }
    }
    let gone = std::time::Instant::now();
    drop((sig, audio));
    let interrupted = notice(&mut notices).await;
    assert_eq!(interrupted.name, "meeting.rtms_interrupted");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reconnect_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    // A new client, new connections, the same ids and signature.
    let (sig2, audio2, _) = connect_audio(&sim.signaling_url(), &sim, &stream, false).await;
    let (messages, ended, _) = audio2.drain().await;
    assert_eq!(
        ended,
        Some(Ended::Close(Some(1000))),
        "the stream ran to its end"
    );
    drop(sig2);
    let after: Vec<u64> = messages
        .iter()
        .filter(|m| m["msg_type"] == 14)
        .map(|m| m["content"]["timestamp"].as_u64().expect("a timestamp"))
        .collect();
    assert!(after.windows(2).all(|w| w[0] < w[1]), "in order, once");
    // Everything written after the loss was noticed reached the new client, including
    // what was buffered while nobody was connected (300 ms: about 15 frames).
    let settle = gone + Duration::from_millis(100);
    for m in stream
        .sent()
        .iter()
        .filter(|m| m.kind == MediaKind::Audio && m.sent_at > settle)
    {
        assert!(after.contains(&m.timestamp), "frame {} lost", m.timestamp);
    }
    let buffered = after.iter().filter(|ts| **ts < reconnect_ms).count();
    assert!(buffered >= 10, "{buffered} buffered frames replayed");
    assert!(stream.wait_done(WAIT).await);
    let stats = stream.stats();
    assert_eq!(stats.signaling_handshakes, 2, "{stats:?}");
    assert!(stream
        .audio_frames()
        .iter()
        .all(|f| f.fate == FrameFate::Sent));
    assert_eq!(
        stats.outcome,
        Some(StreamOutcome::Completed { reason: 6 }),
        "{stats:?}"
    );
}
