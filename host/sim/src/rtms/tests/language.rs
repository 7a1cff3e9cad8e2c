//! Transcript languages: Zoom's language numbers, asked for in the transcript params
//! (`src_language`) and carried by every transcript message (`language`).

use serde_json::json;
use zoomhost_protocol::rtms::language;

use super::*;

#[tokio::test]
async fn transcripts_carry_the_language_number_asked_for_and_bad_ones_get_43() {
    let sim = sim(|_| {}).await;
    let stream = sim.add_stream(StreamSpec {
        participants: participants(2),
        frames: 10,
        pace: Pace::Fast,
        transcript_every: 5,
        ..StreamSpec::default()
    });
    let (mut sig, reply) = signaling(&sim, &stream, false).await;
    let url = url_of(&reply, "transcript");

    // Text (what servers took before the numbers) and numbers outside Zoom's table are
    // refused with 43, and the socket is closed.
    for bad in [json!("en-US"), json!(37), json!(-2), json!(9.5)] {
        let params = json!({"transcript": {"content_type": 5, "src_language": bad}});
        let (mut peer, t4) = media(&url, &sim, &stream, 8, params, false).await;
        assert_eq!(
            t4["status_code"],
            status::INVALID_MEDIA_TRANSCRIPT_SOURCE_LANGUAGE,
            "{bad}: {t4}"
        );
        assert!(t4["reason"]
            .as_str()
            .is_some_and(|r| r.contains("src_language")));
        assert!(peer.next().await.is_none(), "{bad}: closed");
    }

    let params = json!({"transcript": {
        "content_type": 5, "src_language": language::FRENCH_CANADA, "enable_lid": false
    }});
    let (transcript, t4) = media(&url, &sim, &stream, 8, params, false).await;
    assert_eq!(t4["status_code"], 0, "{t4}");
    assert_eq!(t4["media_params"]["transcript"]["src_language"], 12);
    assert_eq!(t4["media_params"]["transcript"]["enable_lid"], false);
    sig.send(json!({"msg_type": 7, "rtms_stream_id": stream.stream_id()}))
        .await;
    let reader = tokio::spawn(transcript.drain());
    let _ = sig.drain().await;
    let (messages, _, _) = reader.await.expect("reader");
    assert_eq!(messages.len(), 2, "{messages:?}");
    for m in &messages {
        assert_eq!(m["msg_type"], 17);
        assert_eq!(m["content"]["language"], language::FRENCH_CANADA, "{m}");
    }
    let rejected = stream.stats().rejections;
    assert_eq!(rejected, vec![(4, 43); 4]);
}
