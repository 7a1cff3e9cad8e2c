//! The media a socket writes: [`SimStream::plan`] picks the next items of the kinds the
//! socket owns (resends first, then by frame, each when it is due), and
//! [`SimStream::commit`] makes them count once written, moves the cursors, records them,
//! and fires the events and faults that follow audio frames.

use base64::Engine as _;
use bytes::Bytes;
use serde_json::json;
use tokio::time::Instant;
use zoomhost_protocol::rtms::msg::event_type;

use super::faults::SelfAction;
use super::state::Core;
use super::timeline::Timeline;
use super::{Phase, SentMedia, SimStream};
use crate::rtms::source;
use crate::rtms::wire;
use crate::rtms::{End, Fault, MediaKind, Pace};
use crate::util::lock;

/// Most items written between two flushes (and two looks at the socket's input).
const MAX_BATCH: usize = 64;

/// One item a media socket is about to write.
pub(in crate::rtms) struct Outgoing {
    pub kind: MediaKind,
    pub index: u64,
    pub tick: u32,
    pub resent: bool,
    /// Last audio source of its frame (faults fire after it).
    pub last_of_tick: bool,
    pub json: String,
}

/// What a media socket should do next.
pub(in crate::rtms) enum Plan {
    /// Nothing to send until the stream's state changes.
    Idle,
    /// Nothing due before this instant.
    WaitUntil(Instant),
    /// Write the items put in the buffer, then commit them.
    Send,
}

impl SimStream {
    /// What media connection `id` should write now; items go into `buf`.
    pub(in crate::rtms) fn plan(&self, id: u64, now: Instant, buf: &mut Vec<Outgoing>) -> Plan {
        buf.clear();
        let tl = &self.tl;
        let mut core = self.lock();
        if !core.playing(tl) {
            return Plan::Idle;
        }
        let mut owned = [false; 5];
        for k in MediaKind::ALL {
            owned[k.index()] = core.owners[k.index()] == Some(id) && core.wanted[k.index()];
        }
        if !owned.contains(&true) {
            return Plan::Idle;
        }
        if let Some(queue) = core.resend.get_mut(&id) {
            let take = queue.len().min(MAX_BATCH);
            let again: Vec<u64> = queue.drain(..take).collect();
            if queue.is_empty() {
                core.resend.remove(&id);
            }
            buf.extend(
                again
                    .into_iter()
                    .filter_map(|n| core.item(tl, MediaKind::Audio, n, true)),
            );
        }
        let sources = core.sources();
        let mut cursors = core.cursors;
        while buf.len() < MAX_BATCH {
            let mut next: Option<(u32, MediaKind)> = None;
            for kind in MediaKind::ALL {
                let k = kind.index();
                if owned[k] && cursors[k] < tl.count(kind, sources) {
                    let tick = tl.tick_of(kind, cursors[k], sources);
                    if next.is_none_or(|(t, _)| tick < t) {
                        next = Some((tick, kind));
                    }
                }
            }
            let Some((tick, kind)) = next else { break };
            if tl.pace == Pace::RealTime {
                let due = core.due_at(tick);
                if due > now {
                    if buf.is_empty() {
                        return Plan::WaitUntil(due);
                    }
                    break;
                }
            }
            let Some(item) = core.item(tl, kind, cursors[kind.index()], false) else {
                break;
            };
            let boundary =
                item.last_of_tick && core.faults.front().is_some_and(|(n, _)| *n <= tick);
            buf.push(item);
            cursors[kind.index()] += 1;
            if boundary {
                break;
            }
        }
        if buf.is_empty() {
            Plan::Idle
        } else {
            Plan::Send
        }
    }

    /// Items of `batch` were written by connection `id`: they count as sent now.
    /// Returns what a fault asks of that connection.
    pub(in crate::rtms) fn commit(&self, id: u64, batch: &[Outgoing]) -> SelfAction {
        let tl = &self.tl;
        let now = Instant::now();
        let sent_at = now.into_std();
        let mut action = SelfAction::None;
        let mut changed = false;
        {
            let mut core = self.lock();
            let mut fired = Vec::new();
            let mut records = Vec::new();
            for item in batch {
                let k = item.kind.index();
                if item.resent {
                    core.stats.resent += 1;
                } else {
                    if core.owners[k] != Some(id) || core.cursors[k] != item.index {
                        break;
                    }
                    core.cursors[k] += 1;
                    core.high_tick = core.high_tick.max(item.tick + 1);
                    let counter = match item.kind {
                        MediaKind::Audio => &mut core.stats.audio_frames_sent,
                        MediaKind::Video => &mut core.stats.video_sent,
                        MediaKind::Share => &mut core.stats.share_sent,
                        MediaKind::Transcript => &mut core.stats.transcripts_sent,
                        MediaKind::Chat => &mut core.stats.chat_sent,
                    };
                    *counter += 1;
                    if item.kind == MediaKind::Audio {
                        core.after_audio(tl, item, &mut fired);
                    }
                }
                if tl.record {
                    records.push(core.record(tl, item, sent_at));
                }
            }
            if !records.is_empty() {
                lock(&self.sent).extend(records);
            }
            for fault in fired {
                changed = true;
                core.apply_fault(tl, id, fault, now, &mut action);
            }
            if tl.end == End::AfterFrames
                && core.phase == Phase::Live
                && core.stop_request.is_none()
                && core.all_sent(tl)
            {
                core.stop_request = Some(tl.stop_reason);
                changed = true;
            }
            if changed {
                core.update(tl, now);
            }
        }
        if changed {
            self.bump();
        }
        action
    }
}

impl Core {
    /// Item `n` of `kind`, ready to write.
    pub(super) fn item(
        &self,
        tl: &Timeline,
        kind: MediaKind,
        n: u64,
        resent: bool,
    ) -> Option<Outgoing> {
        let sources = self.sources();
        let tick = tl.tick_of(kind, n, sources);
        let ts = self.timestamp(tl, tick);
        let mut last_of_tick = false;
        let json = match kind {
            MediaKind::Audio => {
                let plan = self.audio.as_ref()?;
                let source = (n % u64::from(sources.max(1))) as usize;
                last_of_tick = source as u32 + 1 == sources;
                plan.message(source, tick, ts)
            }
            MediaKind::Transcript => {
                let (user_id, user_name) = tl.speaker_user(tick);
                let first = tick + 1 - tl.transcript_every.max(1);
                wire::media_message(
                    kind.msg_type(),
                    json!({
                        "user_id": user_id,
                        "user_name": user_name,
                        "data": source::sentence(n),
                        "timestamp": ts,
                        "start_time": self.timestamp(tl, first),
                        "end_time": ts + self.frame_ms,
                        "language": self.language,
                    }),
                )
            }
            MediaKind::Video | MediaKind::Share => {
                let (user_id, user_name) = tl.speaker_user(tick);
                let data = base64::engine::general_purpose::STANDARD
                    .encode(source::fake_frame(kind.key(), n));
                wire::media_message(
                    kind.msg_type(),
                    json!({"user_id": user_id, "user_name": user_name, "data": data, "timestamp": ts}),
                )
            }
            MediaKind::Chat => {
                let (user_id, user_name) = tl.speaker_user(tick);
                wire::media_message(
                    kind.msg_type(),
                    json!({
                        "user_id": user_id,
                        "user_name": user_name,
                        "data": source::chat_text(n, user_name),
                        "timestamp": ts,
                    }),
                )
            }
        };
        Some(Outgoing {
            kind,
            index: n,
            tick,
            resent,
            last_of_tick,
            json,
        })
    }

    pub(super) fn record(
        &self,
        tl: &Timeline,
        item: &Outgoing,
        sent_at: std::time::Instant,
    ) -> SentMedia {
        let (user_id, user_name, data) = match item.kind {
            MediaKind::Audio => match &self.audio {
                Some(plan) => {
                    let source = (item.index % u64::from(plan.sources().max(1))) as usize;
                    let (id, name) = plan.user(source);
                    (id, name, plan.frame(source, item.tick))
                }
                None => (0, "", Bytes::new()),
            },
            kind => {
                let (id, name) = tl.speaker_user(item.tick);
                let data = match kind {
                    MediaKind::Transcript => {
                        Bytes::from_static(source::sentence(item.index).as_bytes())
                    }
                    MediaKind::Chat => Bytes::from(source::chat_text(item.index, name)),
                    _ => source::fake_frame(kind.key(), item.index),
                };
                (id, name, data)
            }
        };
        SentMedia {
            kind: item.kind,
            index: item.index,
            frame: item.tick,
            user_id,
            user_name: user_name.to_string(),
            timestamp: self.timestamp(tl, item.tick),
            data,
            sent_at,
            resent: item.resent,
        }
    }

    /// Events and faults that follow a committed audio item.
    pub(super) fn after_audio(&mut self, tl: &Timeline, item: &Outgoing, fired: &mut Vec<Fault>) {
        if self.first_packet.is_none() {
            let ts = self.timestamp(tl, item.tick);
            self.first_packet = Some(ts);
            if self
                .subscriptions
                .contains(&event_type::FIRST_PACKET_TIMESTAMP)
            {
                self.send_signaling(wire::first_packet_event(ts));
            }
        }
        if let Some(speaker) = tl.speaker(item.tick) {
            if self.last_speaker != Some(speaker) {
                self.last_speaker = Some(speaker);
                if self
                    .subscriptions
                    .contains(&event_type::ACTIVE_SPEAKER_CHANGE)
                {
                    self.send_signaling(wire::speaker_event(&tl.participants[speaker]));
                }
            }
        }
        if item.last_of_tick {
            while self.faults.front().is_some_and(|(n, _)| *n <= item.tick) {
                if let Some((_, fault)) = self.faults.pop_front() {
                    fired.push(fault);
                }
            }
        }
    }
}
