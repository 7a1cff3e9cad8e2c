//! Individual video (`data_opt` 4, Zoom's single individual stream, March 2026): the
//! one participant a client subscribed to with `VIDEO_SUBSCRIPTION_REQ` (28), answered
//! with `VIDEO_SUBSCRIPTION_RESP` (29); whose camera is on and when
//! ([`crate::rtms::StreamSpec::cameras`]), announced with `EVENT_UPDATE` 8/9
//! (participant video on/off) to clients subscribed to them; who each video item shows;
//! and the record of every video frame written.
//!
//! The video timeline is the same as with `data_opt` 3 (items spread over the frames).
//! With `data_opt` 4 an item shows the subscribed participant when that participant's
//! camera is on at its frame; otherwise no frame goes out for it
//! ([`SimStreamStats::video_unwatched`](super::SimStreamStats::video_unwatched)): no
//! video before a subscription, none after `subscribe: false`, none while the subscribed
//! camera is off. A new subscription replaces the previous one.

use bytes::Bytes;
use serde_json::Value;
use sha2::{Digest, Sha256};
use zoomhost_protocol::rtms::control;
use zoomhost_protocol::rtms::media::data_opt;
use zoomhost_protocol::rtms::msg::event_type;

use super::media::Outgoing;
use super::records::{VideoFrameRecord, VideoRequest};
use super::state::Core;
use super::timeline::Timeline;
use super::SimStream;
use crate::rtms::{source, status, wire, CameraOn, MediaKind, SimParticipant};
use crate::util::now_ms;

/// The cameras of a stream: the spec's, or every participant's, always on.
pub(super) fn cameras(
    spec: Option<Vec<CameraOn>>,
    participants: &[SimParticipant],
) -> Vec<CameraOn> {
    spec.unwrap_or_else(|| {
        participants
            .iter()
            .map(|p| CameraOn::always(p.user_id))
            .collect()
    })
}

/// The cameras turning on or off after frame 0, by frame (offs first within a frame):
/// `(frame, on, user_id)`. Empty spans are left out.
pub(super) fn toggles(cameras: &[CameraOn]) -> Vec<(u32, bool, u32)> {
    let mut out = Vec::new();
    for camera in cameras {
        if camera.until_frame.is_some_and(|u| u <= camera.from_frame) {
            continue;
        }
        if camera.from_frame > 0 {
            out.push((camera.from_frame, true, camera.user_id));
        }
        if let Some(until) = camera.until_frame {
            out.push((until, false, camera.user_id));
        }
    }
    out.sort_unstable();
    out
}

/// The payload of individual video item `n` showing `user_id` (not a real codec frame;
/// it names both, so a client that mixed up participants is caught byte for byte).
fn individual_frame(user_id: u32, n: u64) -> Bytes {
    Bytes::from(format!("sim-video-{user_id}-frame-{n}").into_bytes())
}

/// `user_id` as a request carries it: a number, or a string of digits.
fn user_id_of(v: &Value) -> Option<u32> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl Timeline {
    /// Whether `user_id`'s camera is on during `frame`.
    pub(super) fn camera_on(&self, user_id: u32, frame: u32) -> bool {
        self.cameras.iter().any(|c| {
            c.user_id == user_id && c.from_frame <= frame && c.until_frame.is_none_or(|u| frame < u)
        })
    }

    fn participant(&self, user_id: u32) -> Option<&SimParticipant> {
        self.participants.iter().find(|p| p.user_id == user_id)
    }

    /// Who video or share item `n` (of frame `tick`) shows, and its payload: the
    /// subscribed participant's individual video (`individual`), else the active
    /// speaker's.
    pub(super) fn picture(
        &self,
        kind: MediaKind,
        n: u64,
        tick: u32,
        individual: Option<u32>,
    ) -> (u32, &str, Bytes) {
        match individual {
            Some(user_id) => {
                let name = self
                    .participant(user_id)
                    .map_or("", |p| p.user_name.as_str());
                (user_id, name, individual_frame(user_id, n))
            }
            None => {
                let (user_id, name) = self.speaker_user(tick);
                (user_id, name, source::fake_frame(kind.key(), n))
            }
        }
    }
}

impl Core {
    /// Whether video was negotiated as individual video (`data_opt` 4).
    pub(super) fn individual_video(&self) -> bool {
        self.other_params[MediaKind::Video.index()]
            .as_ref()
            .and_then(|p| p.get("data_opt"))
            .and_then(Value::as_u64)
            == Some(u64::from(data_opt::VIDEO_SINGLE_INDIVIDUAL))
    }

    /// Whose individual video frame `tick` shows: the subscribed participant, if their
    /// camera is on then.
    pub(super) fn video_user(&self, tl: &Timeline, tick: u32) -> Option<u32> {
        self.video_subscription
            .filter(|user_id| tl.camera_on(*user_id, tick))
    }

    /// The stream's media reached `tick`: announces the cameras that turned on or off
    /// since (`EVENT_UPDATE` 8/9, one per frame and direction, to a client subscribed to
    /// that event type).
    pub(super) fn camera_events(&mut self, tl: &Timeline, tick: u32) {
        while let Some(&(frame, on, _)) = tl.camera_toggles.get(self.camera_cursor) {
            if frame > tick {
                break;
            }
            let mut users = Vec::new();
            while let Some(&(f, o, user_id)) = tl.camera_toggles.get(self.camera_cursor) {
                if f != frame || o != on {
                    break;
                }
                users.push(user_id);
                self.camera_cursor += 1;
            }
            let event = if on {
                event_type::PARTICIPANT_VIDEO_ON
            } else {
                event_type::PARTICIPANT_VIDEO_OFF
            };
            if self.subscriptions.contains(&event) {
                let ts = self.timestamp(tl, frame);
                self.send_signaling(wire::participants_video_event(event, &users, ts));
            }
        }
    }

    /// A client subscribed to event 8: the cameras on now, in one `EVENT_UPDATE` 8 (none
    /// when every camera is off).
    pub(super) fn cameras_on_now(&self, tl: &Timeline) {
        let frame = match self.camera_cursor {
            0 => 0,
            n => tl.camera_toggles[n - 1].0,
        };
        let mut users: Vec<u32> = tl
            .cameras
            .iter()
            .map(|c| c.user_id)
            .filter(|user_id| tl.camera_on(*user_id, frame))
            .collect();
        users.sort_unstable();
        users.dedup();
        if !users.is_empty() {
            self.send_signaling(wire::participants_video_event(
                event_type::PARTICIPANT_VIDEO_ON,
                &users,
                now_ms(),
            ));
        }
    }

    /// The record of video item `item`, just written.
    pub(super) fn video_record(&self, tl: &Timeline, item: &Outgoing) -> VideoFrameRecord {
        let (user_id, _, data) = tl.picture(item.kind, item.index, item.tick, item.video_user);
        VideoFrameRecord {
            index: item.index,
            frame: item.tick,
            user_id,
            timestamp: self.timestamp(tl, item.tick),
            sha256: Sha256::digest(&data).into(),
        }
    }

    /// Applies a `VIDEO_SUBSCRIPTION_REQ`: the answer's status code and reason.
    fn video_request(
        &mut self,
        tl: &Timeline,
        user_id: Option<u32>,
        subscribe: Option<bool>,
    ) -> (u32, String) {
        let Some(user_id) = user_id else {
            return (
                status::INVALID_PAYLOAD,
                "user_id missing or not a number".into(),
            );
        };
        let Some(subscribe) = subscribe else {
            return (
                status::INVALID_PAYLOAD,
                "subscribe missing or not a boolean".into(),
            );
        };
        if self.other_params[MediaKind::Video.index()].is_some() && !self.individual_video() {
            return (
                status::INVALID_MEDIA_VIDEO_DATA_OPT,
                format!(
                    "video was negotiated without individual video: a subscription needs media_params.video.data_opt {}",
                    data_opt::VIDEO_SINGLE_INDIVIDUAL
                ),
            );
        }
        if !subscribe {
            self.video_subscription = None;
            return (status::OK, "OK".into());
        }
        if tl.participant(user_id).is_none() {
            return (
                status::INVALID_PAYLOAD,
                format!("user_id {user_id} is not a participant of this stream"),
            );
        }
        if self.video_subscription == Some(user_id) {
            return (
                status::DUPLICATE_VIDEO_SUBSCRIPTION,
                format!("already subscribed to user_id {user_id}"),
            );
        }
        self.video_subscription = Some(user_id);
        (status::OK, "OK".into())
    }
}

impl SimStream {
    /// `VIDEO_SUBSCRIPTION_REQ` (28): subscribes (replacing the previous subscription) or
    /// stops, and returns the `VIDEO_SUBSCRIPTION_RESP` (29): 0 OK, 44 when that
    /// participant already is the subscription, 4 for a request without a usable
    /// `user_id` or `subscribe` or naming someone who is not in the stream, 29 when the
    /// video socket was negotiated with another `data_opt`.
    pub(in crate::rtms) fn video_subscription(&self, msg: &Value) -> String {
        let user_id = user_id_of(&msg["user_id"]);
        let subscribe = msg["subscribe"].as_bool();
        let (status_code, reason) = {
            let mut core = self.lock();
            let (status_code, reason) = core.video_request(&self.tl, user_id, subscribe);
            core.stats.video_requests.push(VideoRequest {
                user_id: user_id.unwrap_or(0),
                subscribe: subscribe.unwrap_or(false),
                status_code,
            });
            (status_code, reason)
        };
        tracing::debug!(stream = %self.tl.stream_id, ?user_id, ?subscribe, status_code, "RTMS sim: video subscription");
        self.bump();
        control::video_subscription_response(user_id.unwrap_or(0), status_code, &reason, now_ms())
            .to_string()
    }
}
