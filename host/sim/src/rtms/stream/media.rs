//! The media a socket writes: [`SimStream::plan`] drops what can no longer be sent (audio
//! older than the buffer, video produced while nobody could receive it), then picks the
//! next items of the kinds the socket owns (resends first, then by frame, each when it
//! is due), and [`SimStream::commit`] makes them count once written, moves the cursors,
//! records them, and fires the events and faults that follow audio frames.

use base64::Engine as _;
use bytes::Bytes;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use zoomhost_protocol::rtms::msg::event_type;

use super::faults::SelfAction;
use super::records::{AudioFrameRecord, FrameFate};
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
    /// Individual video: whose video it is.
    pub video_user: Option<u32>,
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
        let mut changed = false;
        let plan = {
            let mut core = self.lock();
            if !core.playing() {
                return Plan::Idle;
            }
            let mut owned = [false; 5];
            for k in MediaKind::ALL {
                owned[k.index()] = core.owners[k.index()] == Some(id) && core.wanted[k.index()];
            }
            if !owned.contains(&true) {
                return Plan::Idle;
            }
            if tl.pace == Pace::RealTime {
                let before = core.cursors;
                let mut dropped = Vec::new();
                for kind in MediaKind::ALL {
                    if owned[kind.index()] {
                        core.drop_stale(tl, kind, now, &mut dropped);
                    }
                }
                // Anything dropped (recorded or not, of any kind) may have fired a
                // fault or finished the stream.
                if core.cursors != before {
                    changed = true;
                    if tl.record {
                        lock(&self.frames).extend(dropped);
                    }
                    core.finish_if_all_sent(tl);
                    core.update(tl, now);
                }
            }
            if !core.playing() {
                // A fault that fired on a dropped frame changed the stream.
                None
            } else {
                let unwatched = core.stats.video_unwatched;
                let plan = core.plan_batch(tl, id, now, &owned, buf);
                if core.stats.video_unwatched != unwatched {
                    // Individual video items nobody watched were passed over.
                    changed = true;
                    core.finish_if_all_sent(tl);
                    core.update(tl, now);
                }
                Some(plan)
            }
        };
        if changed {
            self.bump();
        }
        plan.unwrap_or(Plan::Idle)
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
            let mut frames = Vec::new();
            let mut video_frames = Vec::new();
            for item in batch {
                let k = item.kind.index();
                if item.resent {
                    core.stats.resent += 1;
                } else {
                    if core.owners[k] != Some(id) || core.cursors[k] != item.index {
                        break;
                    }
                    core.cursors[k] += 1;
                    let counter = match item.kind {
                        MediaKind::Audio => &mut core.stats.audio_frames_sent,
                        MediaKind::Video => &mut core.stats.video_sent,
                        MediaKind::Share => &mut core.stats.share_sent,
                        MediaKind::Transcript => &mut core.stats.transcripts_sent,
                        MediaKind::Chat => &mut core.stats.chat_sent,
                    };
                    *counter += 1;
                    if item.kind == MediaKind::Audio {
                        if tl.record {
                            frames.push(core.frame_record(tl, item.index, FrameFate::Sent));
                        }
                        core.after_audio(tl, item.tick, item.last_of_tick, &mut fired);
                    }
                    if item.kind == MediaKind::Video && tl.record {
                        video_frames.push(core.video_record(tl, item));
                    }
                }
                if tl.record {
                    records.push(core.record(tl, item, sent_at));
                }
            }
            if !records.is_empty() {
                lock(&self.sent).extend(records);
            }
            if !frames.is_empty() {
                lock(&self.frames).extend(frames);
            }
            if !video_frames.is_empty() {
                lock(&self.video_frames).extend(video_frames);
            }
            for fault in fired {
                changed = true;
                core.fire_fault(tl, id, fault, now, &mut action);
            }
            changed |= core.finish_if_all_sent(tl);
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
    /// With [`End::AfterFrames`], asks for the stop sequence once every requested item
    /// was sent or dropped; true when it did.
    fn finish_if_all_sent(&mut self, tl: &Timeline) -> bool {
        if tl.end == End::AfterFrames
            && self.phase == Phase::Live
            && self.stop_request.is_none()
            && self.all_sent(tl)
        {
            self.stop_request = Some(tl.stop_reason);
            return true;
        }
        false
    }

    /// Moves `kind`'s cursor past the items that can no longer be sent (real time):
    /// audio, transcript and chat older than the buffer (or produced before the first
    /// connection when the client asked for `buffer_data: false`), video and share
    /// produced before the kind last started flowing. Dropped audio frames are recorded
    /// in `dropped`, and the faults due after them fire.
    fn drop_stale(
        &mut self,
        tl: &Timeline,
        kind: MediaKind,
        now: Instant,
        dropped: &mut Vec<AudioFrameRecord>,
    ) {
        let k = kind.index();
        let sources = self.sources();
        let count = tl.count(kind, sources);
        let buffered = matches!(
            kind,
            MediaKind::Audio | MediaKind::Transcript | MediaKind::Chat
        );
        let oldest = now.checked_sub(tl.audio_buffer);
        let initial = if self.buffer_data {
            None
        } else {
            self.first_flow
        };
        let flowing_since = self.flow_since[k];
        while self.cursors[k] < count {
            let n = self.cursors[k];
            let tick = tl.tick_of(kind, n, sources);
            let due = self.due_at(tick);
            let stale = if buffered {
                oldest.is_some_and(|o| due < o) || initial.is_some_and(|f| due < f)
            } else {
                flowing_since.is_some_and(|f| due < f)
            };
            if !stale {
                break;
            }
            self.cursors[k] += 1;
            match kind {
                MediaKind::Audio => {
                    self.stats.audio_dropped += 1;
                    if tl.record {
                        dropped.push(self.frame_record(tl, n, FrameFate::Dropped));
                    }
                    let last_of_tick = (n + 1).is_multiple_of(u64::from(sources.max(1)));
                    let mut fired = Vec::new();
                    self.after_dropped_audio(tick, last_of_tick, &mut fired);
                    for fault in fired {
                        let mut ignored = SelfAction::None;
                        self.fire_fault(tl, 0, fault, now, &mut ignored);
                    }
                }
                MediaKind::Transcript | MediaKind::Chat => self.stats.text_dropped += 1,
                MediaKind::Video | MediaKind::Share => self.stats.video_dropped += 1,
            }
        }
    }

    /// The items connection `id` writes next, up to [`MAX_BATCH`].
    fn plan_batch(
        &mut self,
        tl: &Timeline,
        id: u64,
        now: Instant,
        owned: &[bool; 5],
        buf: &mut Vec<Outgoing>,
    ) -> Plan {
        if let Some(queue) = self.resend.get_mut(&id) {
            let take = queue.len().min(MAX_BATCH);
            let again: Vec<u64> = queue.drain(..take).collect();
            if queue.is_empty() {
                self.resend.remove(&id);
            }
            buf.extend(
                again
                    .into_iter()
                    .filter_map(|n| self.item(tl, MediaKind::Audio, n, true)),
            );
        }
        let sources = self.sources();
        let mut cursors = self.cursors;
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
                let due = self.due_at(tick);
                if due > now {
                    if buf.is_empty() {
                        return Plan::WaitUntil(due);
                    }
                    break;
                }
            }
            if kind == MediaKind::Video && self.individual_video() {
                self.camera_events(tl, tick);
                if self.video_user(tl, tick).is_none() {
                    // Nobody subscribed, or their camera is off: no frame for this item.
                    let k = kind.index();
                    if cursors[k] != self.cursors[k] {
                        // Items of this batch come first.
                        break;
                    }
                    self.cursors[k] += 1;
                    cursors[k] += 1;
                    self.stats.video_unwatched += 1;
                    continue;
                }
            }
            let Some(item) = self.item(tl, kind, cursors[kind.index()], false) else {
                break;
            };
            let boundary =
                item.last_of_tick && self.faults.front().is_some_and(|(n, _)| *n <= tick);
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

    /// The record of audio item `n`.
    pub(super) fn frame_record(&self, tl: &Timeline, n: u64, fate: FrameFate) -> AudioFrameRecord {
        let sources = self.sources();
        let tick = tl.tick_of(MediaKind::Audio, n, sources);
        let (user_id, sha256) = match &self.audio {
            Some(plan) => {
                let source = (n % u64::from(sources.max(1))) as usize;
                let data = plan.frame(source, tick);
                (plan.user(source).0, Sha256::digest(&data).into())
            }
            None => (0, [0; 32]),
        };
        AudioFrameRecord {
            index: n,
            frame: tick,
            user_id,
            timestamp: self.timestamp(tl, tick),
            sha256,
            fate,
        }
    }

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
        let mut video_user = None;
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
                if kind == MediaKind::Video && self.individual_video() {
                    video_user = Some(self.video_user(tl, tick)?);
                }
                let (user_id, user_name, data) = tl.picture(kind, n, tick, video_user);
                let data = base64::engine::general_purpose::STANDARD.encode(data);
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
            video_user,
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
            kind @ (MediaKind::Video | MediaKind::Share) => {
                tl.picture(kind, item.index, item.tick, item.video_user)
            }
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

    /// Events and faults that follow a committed audio item: the first one is announced
    /// with `EVENT_UPDATE` 1, unasked, as Zoom does.
    pub(super) fn after_audio(
        &mut self,
        tl: &Timeline,
        tick: u32,
        last_of_tick: bool,
        fired: &mut Vec<Fault>,
    ) {
        if self.first_packet.is_none() {
            let ts = self.timestamp(tl, tick);
            self.first_packet = Some(ts);
            self.send_signaling(wire::first_packet_event(ts));
        }
        self.camera_events(tl, tick);
        if let Some(speaker) = tl.speaker(tick) {
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
        self.after_dropped_audio(tick, last_of_tick, fired);
    }

    /// The faults due once frame `tick` is over (sent or dropped).
    fn after_dropped_audio(&mut self, tick: u32, last_of_tick: bool, fired: &mut Vec<Fault>) {
        if last_of_tick {
            while self.faults.front().is_some_and(|(n, _)| *n <= tick) {
                if let Some((_, fault)) = self.faults.pop_front() {
                    fired.push(fault);
                }
            }
        }
    }
}
