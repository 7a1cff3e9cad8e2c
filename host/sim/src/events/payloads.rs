//! Realistic Zoom event payloads for one meeting.

use crate::util::{now_ms, random_token};
use rand::Rng;
use serde_json::{json, Value};
use std::collections::HashMap;

/// Generates realistic Zoom payloads for one meeting (shapes as in the event notes of the `zoomhost-zoom` crate docs).
#[derive(Debug, Clone)]
pub struct MeetingGen {
    /// Account id.
    pub account_id: String,
    /// Numeric meeting id.
    pub meeting_id: u64,
    /// Meeting UUID (base64-like, ends with `==`).
    pub uuid: String,
    /// Host user id.
    pub host_id: String,
    /// Meeting topic.
    pub topic: String,
    /// The RTMS stream id used by `meeting.rtms_*`.
    pub rtms_stream_id: String,
    /// `server_urls` of `meeting.rtms_started`.
    pub rtms_server_urls: String,
    /// Whether an `rtms_start` step used `rtms_stream_id` already (the next one gets a
    /// new id).
    pub(super) rtms_started: bool,
    start_ms: u64,
    pub(super) participants: HashMap<String, Value>,
}

/// `ms` since the epoch as RFC 3339 UTC with seconds (`2024-05-01T12:00:00Z`).
pub(super) fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

impl MeetingGen {
    /// A meeting with random ids and the given topic.
    pub fn new(topic: &str) -> Self {
        let mut rng = rand::rng();
        Self {
            account_id: random_token(22),
            meeting_id: rng.random_range(80_000_000_000..99_999_999_999),
            uuid: format!("{}==", random_token(22)),
            host_id: random_token(22),
            topic: topic.to_string(),
            rtms_stream_id: random_token(32).to_lowercase(),
            rtms_server_urls: "wss://rtms.zoom.us".to_string(),
            rtms_started: false,
            start_ms: now_ms(),
            participants: HashMap::new(),
        }
    }

    fn object(&self) -> Value {
        json!({
            "id": self.meeting_id,
            "uuid": self.uuid,
            "host_id": self.host_id,
            "topic": self.topic,
            "type": 2,
            "start_time": rfc3339(self.start_ms),
            "timezone": "UTC",
            "duration": 60,
        })
    }

    fn wrap(&self, object: Value) -> Value {
        json!({"account_id": self.account_id, "object": object})
    }

    /// The participant called `name`, created on first use.
    pub(super) fn participant(&mut self, name: &str) -> Value {
        self.participants
            .entry(name.to_string())
            .or_insert_with(|| {
                let mut rng = rand::rng();
                let email = format!(
                    "{}@example.com",
                    name.to_lowercase().replace(char::is_whitespace, ".")
                );
                json!({
                    "user_id": rng.random_range(16_000_000u32..17_000_000).to_string(),
                    "user_name": name,
                    "participant_user_id": random_token(22),
                    "participant_uuid": random_token(32),
                    "id": random_token(22),
                    "email": email,
                })
            })
            .clone()
    }

    /// The payload of `event` (`participant` names who joins or leaves). Unknown event
    /// names get the meeting object.
    pub fn payload(&mut self, event: &str, participant: Option<&str>) -> Value {
        let now = rfc3339(now_ms());
        match event {
            "meeting.started" => self.wrap(self.object()),
            "meeting.ended" => {
                let mut object = self.object();
                object["end_time"] = json!(now);
                self.wrap(object)
            }
            "meeting.participant_joined" | "meeting.participant_left" => {
                let mut who = self.participant(participant.unwrap_or("Ada Lovelace"));
                if event.ends_with("joined") {
                    who["join_time"] = json!(now);
                } else {
                    who["leave_time"] = json!(now);
                    who["leave_reason"] = json!("left the meeting");
                }
                let mut object = self.object();
                object["participant"] = who;
                self.wrap(object)
            }
            "recording.completed" => self.recording(),
            "meeting.rtms_started" => json!({
                "meeting_uuid": self.uuid,
                "rtms_stream_id": self.rtms_stream_id,
                "server_urls": self.rtms_server_urls,
                "operator_id": self.host_id,
                "account_id": self.account_id,
                "meeting_id": self.meeting_id,
            }),
            "meeting.rtms_stopped" => json!({
                "meeting_uuid": self.uuid,
                "rtms_stream_id": self.rtms_stream_id,
                "stop_reason": 6,
            }),
            _ => self.wrap(self.object()),
        }
    }

    fn recording(&self) -> Value {
        let file_id = random_token(36).to_lowercase();
        let share = format!("https://zoom.us/rec/share/{}", random_token(40));
        let mut object = self.object();
        object["account_id"] = json!(self.account_id);
        object["total_size"] = json!(52_428_800);
        object["recording_count"] = json!(1);
        object["share_url"] = json!(share);
        object["recording_files"] = json!([{
            "id": file_id,
            "meeting_id": self.uuid,
            "recording_start": rfc3339(self.start_ms),
            "recording_end": rfc3339(now_ms()),
            "file_type": "MP4",
            "file_extension": "MP4",
            "file_size": 52_428_800,
            "play_url": format!("https://zoom.us/rec/play/{file_id}"),
            "download_url": format!("https://zoom.us/rec/download/{file_id}"),
            "status": "completed",
            "recording_type": "shared_screen_with_speaker_view",
        }]);
        self.wrap(object)
    }
}
