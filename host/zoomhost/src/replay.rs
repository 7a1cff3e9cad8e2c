//! `zoomhost replay`: push a JSON-lines file of recorded Zoom events (webhook-body
//! shape) and optional media through the plugins in a folder.
//!
//! Each line is one of:
//! * an event: `{"event":"meeting.started","event_ts":1700000000000,"payload":{...}}`
//! * a media line with `"media"` set to `open`, `audio`, `transcript`, `join`, `leave`,
//!   `speaker`, `state` or `close`, and `"stream"` naming the stream:
//!   - `{"media":"open","stream":"s1","meeting":"uuid","kinds":["audio","transcript"],
//!      "sample_rate":16000,"channels":1,"frame_ms":20}`
//!   - `{"media":"audio","stream":"s1","user_id":16778240,"user_name":"Ada","ts":1700000000020,
//!      "data":"<base64 bytes>"}`
//!   - `{"media":"transcript","stream":"s1","user_id":1,"user_name":"Ada","ts":1,"text":"hi"}`
//!   - `{"media":"join","stream":"s1","user_id":1,"user_name":"Ada"}` (also leave, speaker)
//!   - `{"media":"state","stream":"s1","state":"active"}`
//!   - `{"media":"close","stream":"s1"}`
//!
//! Blank lines and lines starting with `#` are skipped. A malformed line is reported with
//! its number and skipped; the rest still run.

use std::collections::HashMap;

use base64::Engine as _;
use serde::Deserialize;

use zoomhost_runtime::router::{MediaStream, Router};
use zoomhost_types::{
    AudioCodec, AudioFormat, AudioFrame, Event, EventSource, MediaKind, Participant, SessionKind,
    StreamInfo, StreamState, TranscriptSegment,
};

/// One parsed input line.
#[derive(Debug, Clone)]
pub enum ReplayItem {
    /// An event.
    Event(Event),
    /// A media line.
    Media(MediaLine),
}

/// A media line.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "media", rename_all = "snake_case", deny_unknown_fields)]
pub enum MediaLine {
    /// A stream opens.
    Open {
        /// Stream id.
        stream: String,
        /// Meeting UUID.
        #[serde(default)]
        meeting: String,
        /// Media kinds carried.
        #[serde(default = "default_kinds")]
        kinds: Vec<String>,
        /// Audio sample rate.
        #[serde(default = "default_rate")]
        sample_rate: u32,
        /// Audio channels.
        #[serde(default = "default_channels")]
        channels: u8,
        /// Frame duration.
        #[serde(default = "default_frame_ms")]
        frame_ms: u32,
    },
    /// An audio frame.
    Audio {
        /// Stream id.
        stream: String,
        /// Speaker id.
        #[serde(default)]
        user_id: u32,
        /// Speaker name.
        #[serde(default)]
        user_name: String,
        /// Timestamp (ms).
        #[serde(default)]
        ts: u64,
        /// Base64 audio bytes.
        data: String,
    },
    /// A transcript segment.
    Transcript {
        /// Stream id.
        stream: String,
        /// Speaker id.
        #[serde(default)]
        user_id: u32,
        /// Speaker name.
        #[serde(default)]
        user_name: String,
        /// Start (ms).
        #[serde(default)]
        ts: u64,
        /// End (ms).
        #[serde(default)]
        end_ts: Option<u64>,
        /// Text.
        text: String,
        /// Language.
        #[serde(default)]
        language: Option<String>,
    },
    /// Participant joined.
    Join {
        /// Stream id.
        stream: String,
        /// User id.
        user_id: u32,
        /// User name.
        #[serde(default)]
        user_name: String,
    },
    /// Participant left.
    Leave {
        /// Stream id.
        stream: String,
        /// User id.
        user_id: u32,
        /// User name.
        #[serde(default)]
        user_name: String,
    },
    /// Active speaker changed.
    Speaker {
        /// Stream id.
        stream: String,
        /// User id.
        user_id: u32,
        /// User name.
        #[serde(default)]
        user_name: String,
    },
    /// Stream state changed.
    State {
        /// Stream id.
        stream: String,
        /// State name (`active`, `paused`, ...).
        state: String,
    },
    /// Stream closed.
    Close {
        /// Stream id.
        stream: String,
    },
}

fn default_kinds() -> Vec<String> {
    vec!["audio".into(), "transcript".into()]
}
fn default_rate() -> u32 {
    16_000
}
fn default_channels() -> u8 {
    1
}
fn default_frame_ms() -> u32 {
    20
}

#[derive(Deserialize)]
struct EventLine {
    event: String,
    #[serde(default)]
    event_ts: u64,
    payload: serde_json::Value,
}

/// Parses one line (already known not to be blank or a comment).
pub fn parse_line(line: &str) -> Result<ReplayItem, String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let obj = value
        .as_object()
        .ok_or_else(|| "expected a JSON object".to_string())?;
    if obj.contains_key("media") {
        let media: MediaLine =
            serde_json::from_value(value).map_err(|e| format!("bad media line: {e}"))?;
        if let MediaLine::Audio { data, .. } = &media {
            base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|e| format!("audio data is not base64: {e}"))?;
        }
        return Ok(ReplayItem::Media(media));
    }
    let ev: EventLine = serde_json::from_value(value)
        .map_err(|e| format!("not a Zoom event (need \"event\" and \"payload\"): {e}"))?;
    if ev.event.trim().is_empty() {
        return Err("\"event\" is empty".into());
    }
    if !ev.payload.is_object() {
        return Err("\"payload\" must be a JSON object".into());
    }
    Ok(ReplayItem::Event(Event {
        id: zoomhost_protocol::event_id(&ev.event, ev.event_ts, &ev.payload),
        name: ev.event,
        timestamp: ev.event_ts,
        payload: ev.payload.to_string(),
        source: EventSource::Replay,
    }))
}

/// Parses a whole file: the good items with their line numbers, and the errors as
/// `line N: reason`.
pub fn parse(text: &str) -> (Vec<(usize, ReplayItem)>, Vec<String>) {
    let mut items = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line) {
            Ok(item) => items.push((n, item)),
            Err(e) => errors.push(format!("line {n}: {e}")),
        }
    }
    (items, errors)
}

fn stream_state(s: &str) -> Option<StreamState> {
    Some(match s {
        "inactive" => StreamState::Inactive,
        "active" => StreamState::Active,
        "interrupted" => StreamState::Interrupted,
        "terminating" => StreamState::Terminating,
        "terminated" => StreamState::Terminated,
        "paused" => StreamState::Paused,
        "resumed" => StreamState::Resumed,
        _ => return None,
    })
}

/// Feeds items into `router`, keeping open streams by id. Returns errors for media
/// lines that refer to a stream that is not open, or carry unknown names.
pub struct Player<'a> {
    router: &'a Router,
    streams: HashMap<String, MediaStream>,
}

impl<'a> Player<'a> {
    /// A player with no open streams.
    pub fn new(router: &'a Router) -> Self {
        Self {
            router,
            streams: HashMap::new(),
        }
    }

    /// Plays one item.
    pub fn play(&mut self, item: ReplayItem) -> Result<(), String> {
        let media = match item {
            ReplayItem::Event(e) => {
                self.router.dispatch_event(e);
                return Ok(());
            }
            ReplayItem::Media(m) => m,
        };
        let who = |user_id, user_name| Participant { user_id, user_name };
        match media {
            MediaLine::Open {
                stream,
                meeting,
                kinds,
                sample_rate,
                channels,
                frame_ms,
            } => {
                let media = kinds
                    .iter()
                    .map(|k| {
                        MediaKind::from_name(k).ok_or_else(|| format!("unknown media kind {k:?}"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let info = StreamInfo {
                    stream_id: stream.clone(),
                    meeting_id: meeting,
                    kind: SessionKind::Meeting,
                    media,
                    audio: AudioFormat {
                        codec: AudioCodec::L16,
                        sample_rate,
                        channels,
                        frame_ms,
                    },
                };
                let handle = self.router.open_stream(info);
                self.streams.insert(stream, handle);
            }
            MediaLine::Close { stream } => {
                self.streams
                    .remove(&stream)
                    .ok_or_else(|| format!("stream {stream:?} is not open"))?
                    .close();
            }
            MediaLine::Audio {
                stream,
                user_id,
                user_name,
                ts,
                data,
            } => {
                let data = base64::engine::general_purpose::STANDARD
                    .decode(&data)
                    .map_err(|e| format!("audio data is not base64: {e}"))?;
                self.stream(&stream)?.audio(AudioFrame {
                    user_id,
                    user_name,
                    timestamp: ts,
                    data: data.into(),
                });
            }
            MediaLine::Transcript {
                stream,
                user_id,
                user_name,
                ts,
                end_ts,
                text,
                language,
            } => self.stream(&stream)?.transcript(TranscriptSegment {
                user_id,
                user_name,
                timestamp: ts,
                end_timestamp: end_ts,
                text,
                language,
            }),
            MediaLine::Join {
                stream,
                user_id,
                user_name,
            } => self
                .stream(&stream)?
                .participant_join(who(user_id, user_name)),
            MediaLine::Leave {
                stream,
                user_id,
                user_name,
            } => self
                .stream(&stream)?
                .participant_leave(who(user_id, user_name)),
            MediaLine::Speaker {
                stream,
                user_id,
                user_name,
            } => self
                .stream(&stream)?
                .active_speaker(who(user_id, user_name)),
            MediaLine::State { stream, state } => {
                let st = stream_state(&state).ok_or_else(|| format!("unknown state {state:?}"))?;
                self.stream(&stream)?.state(st);
            }
        }
        Ok(())
    }

    fn stream(&self, id: &str) -> Result<&MediaStream, String> {
        self.streams
            .get(id)
            .ok_or_else(|| format!("stream {id:?} is not open (no earlier \"open\" line)"))
    }

    /// Closes every stream still open.
    pub fn finish(self) {
        for (_, s) in self.streams {
            s.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_and_names_bad_lines() {
        let text = "\
# comment
{\"event\":\"meeting.started\",\"event_ts\":5,\"payload\":{\"id\":\"e1\"}}

not json
{\"event\":\"x\",\"payload\":3}
{\"media\":\"audio\",\"stream\":\"s\",\"data\":\"!!\"}
{\"media\":\"open\",\"stream\":\"s\"}
";
        let (items, errors) = parse(text);
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].0, 2);
        match &items[0].1 {
            ReplayItem::Event(e) => {
                assert_eq!(e.name, "meeting.started");
                assert_eq!(e.timestamp, 5);
                assert_eq!(e.payload, "{\"id\":\"e1\"}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("line 4:"), "{errors:?}");
        assert!(errors[1].starts_with("line 5:"), "{errors:?}");
        assert!(errors[2].starts_with("line 6:") && errors[2].contains("base64"));
    }
}
