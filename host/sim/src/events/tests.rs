//! Scenario and payload tests.

use crate::rtms;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

use super::payloads::rfc3339;
use super::*;

#[test]
fn rfc3339_formats_known_instants() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(1_700_000_000_000), "2023-11-14T22:13:20Z");
}

#[test]
fn the_sample_scenario_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/scenario.toml");
    let scenario = Scenario::load(&path).unwrap();
    assert!(scenario.steps.len() > 5);
    assert!(!scenario.uses_rtms());
}

#[test]
fn the_rtms_sample_scenario_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/rtms-meeting.toml");
    let scenario = Scenario::load(&path).unwrap();
    assert!(scenario.uses_rtms());
    assert_eq!(scenario.base_dir.as_deref(), path.parent());
    let start = scenario
        .steps
        .iter()
        .find_map(|s| match &s.action {
            Action::RtmsStart(start) => Some(start),
            _ => None,
        })
        .unwrap();
    assert_eq!(start.frames, 1000);
    assert_eq!(start.transcript_every, 100);
    assert_eq!(start.pace, rtms::Pace::RealTime);
    // Faults and WAV sources parse too.
    let scenario = Scenario::parse(
        r#"
        [[steps]]
        kind = "rtms_start"
        participants = 2
        wav = "rtms-chime.wav"
        faults = [{ after_frame = 3, fault = "reject", status = 42 },
                  { after_frame = 5, fault = "close_media" },
                  { after_frame = 9, fault = "stall", ms = 20 }]
        "#,
    )
    .unwrap();
    let Action::RtmsStart(start) = &scenario.steps[0].action else {
        panic!("rtms_start");
    };
    let faults: Vec<rtms::Fault> = start.faults.iter().map(|f| (&f.fault).into()).collect();
    assert_eq!(
        faults,
        vec![
            rtms::Fault::Reject(42),
            rtms::Fault::CloseMedia(1000),
            rtms::Fault::Stall(Duration::from_millis(20))
        ]
    );
    assert!(Scenario::parse("[[steps]]\nkind = \"rtms_start\"\nframez = 3").is_err());
}

/// The next event pushed to a raw event WebSocket client: (name, payload).
async fn next_event(ws: &mut crate::rtms::tests::Ws) -> (String, Value) {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an event in time")
            .expect("open")
            .expect("a frame");
        let Message::Text(text) = message else {
            continue;
        };
        let envelope: Value = serde_json::from_str(text.as_str()).unwrap();
        if envelope["module"] != "message" {
            continue;
        }
        let body: Value = serde_json::from_str(envelope["content"].as_str().unwrap()).unwrap();
        return (
            body["event"].as_str().unwrap().to_string(),
            body["payload"].clone(),
        );
    }
}

#[tokio::test]
async fn an_rtms_scenario_announces_streams_a_client_can_join() {
    use crate::rtms::tests as client;
    let authority = Arc::new(TokenCheck(|t: &str| t == "tok"));
    let sim = EventSim::start(EventSimConfig::default(), authority)
        .await
        .unwrap();
    let rtms = client::sim(|_| {}).await;
    let scenario = Scenario::parse(
        r#"
        topic = "RTMS test"
        [[steps]]
        kind = "wait_connected"
        [[steps]]
        kind = "event"
        event = "meeting.participant_joined"
        participant = "Grace Hopper"
        [[steps]]
        kind = "rtms_start"
        participants = ["Ada Lovelace", "Grace Hopper"]
        frames = 10
        pace = "fast"
        transcript_every = 5
        faults = [{ after_frame = 4, fault = "drop_media" }]
        [[steps]]
        kind = "rtms_wait"
        [[steps]]
        kind = "rtms_stop"
        "#,
    )
    .unwrap();
    let alone = Scenario::parse("[[steps]]\nkind = \"rtms_start\"").unwrap();
    let err = alone
        .run(&sim)
        .await
        .expect_err("no RTMS simulator attached");
    assert!(
        format!("{err:#}").contains("needs an RTMS simulator"),
        "{err:#}"
    );
    let url = format!("{}?subscriptionId=s&access_token=tok", sim.url());
    let (mut events, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let run = {
        let (sim, rtms) = (sim.clone(), rtms.clone());
        tokio::spawn(async move { scenario.run_with(&sim, Some(&rtms)).await })
    };
    let (name, joined) = next_event(&mut events).await;
    assert_eq!(name, "meeting.participant_joined");
    let (name, started) = next_event(&mut events).await;
    assert_eq!(name, "meeting.rtms_started");
    assert_eq!(started["meeting_uuid"], joined["object"]["uuid"]);
    assert_eq!(started["server_urls"], rtms.signaling_url());
    assert_eq!(started["meeting_id"], joined["object"]["id"]);
    assert_eq!(started["account_id"], joined["account_id"]);
    assert!(started["operator_id"].is_string());
    let stream_id = started["rtms_stream_id"].as_str().unwrap();
    let stream = rtms.stream(stream_id).unwrap();
    assert_eq!(stream.meeting_uuid(), started["meeting_uuid"]);
    let grace = joined["object"]["participant"]["user_id"].as_str().unwrap();
    assert_eq!(stream.participants()[1].user_id.to_string(), grace);

    let (mut sig, reply) = client::signaling(&rtms, &stream, true).await;
    let url = client::url_of(&reply, "audio");
    let params = json!({"audio": client::audio_params()});
    let (audio, _) = client::media(&url, &rtms, &stream, 1, params, true).await;
    sig.send(json!({"msg_type": 7})).await;
    let sig_reader = tokio::spawn(sig.drain());
    let (frames, _, ended) = client::read_with_resume(&rtms, &stream, &url, 1, audio).await;
    assert_eq!(ended, Some(client::Ended::Close(Some(1000))));
    assert_eq!(frames.len(), 10);
    sig_reader.await.unwrap();

    let report = run.await.unwrap().unwrap();
    assert_eq!(report.rtms_streams.len(), 1);
    assert_eq!(report.rtms_streams[0].stream_id(), stream_id);
    let (name, stopped) = next_event(&mut events).await;
    assert_eq!(name, "meeting.rtms_stopped");
    assert_eq!(stopped["rtms_stream_id"], stream_id);
    assert_eq!(stopped["stop_reason"], 6);
    assert_eq!(
        stream.stats().outcome,
        Some(rtms::StreamOutcome::Completed { reason: 6 })
    );
}

#[test]
fn event_fault_steps_parse() {
    let scenario = Scenario::parse(
        r#"
        [[steps]]
        kind = "token_lifetime"
        seconds = 2
        [[steps]]
        kind = "steady_start"
        every_ms = 50
        [[steps]]
        kind = "expire_token"
        oauth_down_ms = 800
        [[steps]]
        kind = "oauth_down"
        ms = 300
        [[steps]]
        kind = "close"
        code = 1001
        [[steps]]
        kind = "steady_stop"
        "#,
    )
    .unwrap();
    assert!(matches!(
        scenario.steps[2].action,
        Action::ExpireToken {
            oauth_down_ms: 800,
            status: 500
        }
    ));
    let Action::SteadyStart { event, every_ms } = &scenario.steps[1].action else {
        panic!("steady_start");
    };
    assert_eq!((event.as_str(), *every_ms), ("meeting.participant_qos", 50));
}

#[tokio::test]
async fn oauth_outages_by_time_and_token_expiry() {
    let oauth = crate::oauth::OAuthSim::start(crate::oauth::OAuthSimConfig {
        client_id: "c".into(),
        client_secret: "s".into(),
        account_id: "a".into(),
        expires_in: 3600,
    })
    .await
    .unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let ask = || {
        client
            .post(format!("{}?grant_type=client_credentials", oauth.url()))
            .basic_auth("c", Some("s"))
            .send()
    };
    oauth.set_expires_in(2);
    let reply: Value = ask().await.unwrap().json().await.unwrap();
    assert_eq!(reply["expires_in"], 2);
    let token = reply["access_token"].as_str().unwrap().to_string();
    assert!(oauth.expires_at(&token).is_some() && oauth.is_valid(&token));
    oauth.expire(&token);
    assert!(!oauth.is_valid(&token));
    oauth.fail_for(Duration::from_millis(300), 500);
    assert_eq!(ask().await.unwrap().status(), 500);
    assert_eq!(ask().await.unwrap().status(), 500);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(ask().await.unwrap().status(), 200);
}
