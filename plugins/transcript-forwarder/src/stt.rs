//! Speech-to-text of a stream's audio: per-speaker buffers cut into fixed-length chunks,
//! each POSTed as a WAV file to an OpenAI-compatible `/v1/audio/transcriptions`
//! endpoint; the text that comes back becomes a segment with origin `"stt"`.
//!
//! Memory is bounded per stream by `stt_max_buffered_seconds`, counting partial buffers
//! and chunks waiting for the service together: beyond it the oldest waiting chunk (or,
//! when none waits, the oldest partial buffer) is dropped and counted.

use std::collections::VecDeque;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use zoomhost_sdk::http::Request;
use zoomhost_sdk::{debug, info, warn, AudioFrame};

use crate::net::{self, Backoff, Failure, Redactor};
use crate::settings::{Settings, SttSettings};
use crate::sink::{NewSegment, Origin};
use crate::wav::{self, PcmFormat};

/// Audio of one speaker, up to one chunk.
#[derive(Debug)]
struct Buffer {
    user_id: u32,
    user_name: String,
    /// Timestamp of the first byte.
    start_ms: u64,
    /// Timestamp just past the last byte.
    end_ms: u64,
    pcm: Vec<u8>,
}

/// One speaker's audio, ready for the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Zoom user id (0: the mixed stream).
    pub user_id: u32,
    /// Display name.
    pub user_name: String,
    /// Timestamp of the first sample, ms since the epoch.
    pub start_ms: u64,
    /// Timestamp just past the last sample.
    pub end_ms: u64,
    /// 16-bit little-endian PCM.
    pub pcm: Vec<u8>,
}

/// Counters of one stream's speech-to-text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SttStats {
    /// Chunks the service transcribed.
    pub transcribed: u64,
    /// Chunks the service refused for good (4xx or an unreadable answer).
    pub rejected: u64,
    /// Milliseconds of audio dropped to stay within the memory bound.
    pub dropped_ms: u64,
}

/// What [`Transcriber::add`] did beyond buffering.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Added {
    /// Milliseconds of audio dropped to stay within the bound.
    pub dropped_ms: u64,
    /// Whether these are the first drops since the service last answered.
    pub first_drops: bool,
}

/// The speech-to-text state of one stream.
#[derive(Debug)]
pub struct Transcriber {
    format: PcmFormat,
    chunk_bytes: usize,
    cap_bytes: usize,
    min_final_bytes: usize,
    buffers: Vec<Buffer>,
    queue: VecDeque<Chunk>,
    /// Bytes in `buffers` and `queue` together.
    held: usize,
    /// Milliseconds dropped since the service last answered.
    dropped_unreported: u64,
    backoff: Backoff,
    /// Counters.
    pub stats: SttStats,
}

impl Transcriber {
    /// A transcriber for audio of `format`.
    pub fn new(format: PcmFormat, stt: &SttSettings, settings: &Settings) -> Self {
        let per_second = usize::try_from(format.bytes_per_second()).unwrap_or(usize::MAX);
        let seconds = |s: u32| per_second.saturating_mul(s as usize);
        let min_final_ms = usize::try_from(stt.min_final.as_millis()).unwrap_or(usize::MAX);
        let block = format.block_align();
        Transcriber {
            format,
            chunk_bytes: seconds(stt.chunk_seconds),
            cap_bytes: seconds(stt.max_buffered_seconds),
            min_final_bytes: (per_second.saturating_mul(min_final_ms) / 1000 / block * block)
                .max(block),
            buffers: Vec::new(),
            queue: VecDeque::new(),
            held: 0,
            dropped_unreported: 0,
            backoff: Backoff::new(settings.retry_min, settings.retry_max),
            stats: SttStats::default(),
        }
    }

    /// Bytes of audio held (partial buffers and waiting chunks).
    #[cfg(test)]
    pub fn held_bytes(&self) -> usize {
        self.held
    }

    /// Chunks waiting for the service.
    pub fn waiting(&self) -> usize {
        self.queue.len()
    }

    /// Buffers one frame under its speaker; a buffer that reaches the chunk length
    /// becomes a waiting chunk. Returns whether a trailing partial sample frame had to
    /// be cut, and what was dropped to stay within the bound.
    pub fn add(&mut self, frame: &AudioFrame) -> (Added, bool) {
        let block = self.format.block_align();
        let usable = frame.data.len() - frame.data.len() % block;
        let misaligned = usable != frame.data.len();
        let mut data = &frame.data[..usable];
        let mut ts = frame.timestamp;
        while !data.is_empty() {
            let index = match self.buffers.iter().position(|b| b.user_id == frame.user_id) {
                Some(i) => i,
                None => {
                    self.buffers.push(Buffer {
                        user_id: frame.user_id,
                        user_name: frame.user_name.clone(),
                        start_ms: ts,
                        end_ms: ts,
                        pcm: Vec::new(),
                    });
                    self.buffers.len() - 1
                }
            };
            let buffer = &mut self.buffers[index];
            if !frame.user_name.is_empty() && buffer.user_name != frame.user_name {
                buffer.user_name.clone_from(&frame.user_name);
            }
            let take = (self.chunk_bytes - buffer.pcm.len()).min(data.len());
            buffer.pcm.extend_from_slice(&data[..take]);
            self.held += take;
            ts += self.format.millis(take);
            buffer.end_ms = ts;
            data = &data[take..];
            if buffer.pcm.len() >= self.chunk_bytes {
                let full = self.buffers.swap_remove(index);
                self.queue.push_back(Chunk {
                    user_id: full.user_id,
                    user_name: full.user_name,
                    start_ms: full.start_ms,
                    end_ms: full.end_ms,
                    pcm: full.pcm,
                });
            }
        }
        (self.bound(), misaligned)
    }

    /// Drops the oldest audio beyond the cap.
    fn bound(&mut self) -> Added {
        let mut added = Added::default();
        while self.held > self.cap_bytes {
            let bytes = if let Some(chunk) = self.queue.pop_front() {
                chunk.pcm.len()
            } else if let Some(oldest) =
                (0..self.buffers.len()).min_by_key(|&i| self.buffers[i].start_ms)
            {
                self.buffers.swap_remove(oldest).pcm.len()
            } else {
                break;
            };
            self.held -= bytes;
            let ms = self.format.millis(bytes);
            added.first_drops |= self.dropped_unreported == 0;
            added.dropped_ms += ms;
            self.dropped_unreported += ms;
            self.stats.dropped_ms += ms;
        }
        added
    }

    /// The stream ended: partial buffers at least `stt_min_final_ms` long become
    /// chunks; shorter ones are discarded. Returns the milliseconds discarded.
    pub fn finish(&mut self) -> u64 {
        let mut discarded = 0;
        self.buffers.sort_by_key(|b| b.start_ms);
        for buffer in std::mem::take(&mut self.buffers) {
            if buffer.pcm.len() >= self.min_final_bytes {
                self.queue.push_back(Chunk {
                    user_id: buffer.user_id,
                    user_name: buffer.user_name,
                    start_ms: buffer.start_ms,
                    end_ms: buffer.end_ms,
                    pcm: buffer.pcm,
                });
            } else {
                self.held -= buffer.pcm.len();
                discarded += self.format.millis(buffer.pcm.len());
            }
        }
        discarded
    }

    /// Discards what still waits (the stream is gone); returns the milliseconds lost.
    pub fn abandon(&mut self) -> u64 {
        let bytes = self.held;
        self.queue.clear();
        self.buffers.clear();
        self.held = 0;
        self.format.millis(bytes)
    }

    /// Sends waiting chunks while the call's deadline allows; each transcription that
    /// has text is handed to `segment`. Stops at the first retryable failure.
    pub fn pump(
        &mut self,
        stream: &str,
        settings: &Settings,
        stt: &SttSettings,
        redact: &Redactor,
        ignore_backoff: bool,
        mut segment: impl FnMut(NewSegment),
    ) {
        while let Some(chunk) = self.queue.front() {
            if !ignore_backoff && !self.backoff.ready(Instant::now()) {
                return;
            }
            let Some(timeouts) = net::budget(settings) else {
                return;
            };
            let outcome = transcribe(self.format, chunk, stt, redact, timeouts);
            let seconds = self.format.millis(chunk.pcm.len()) as f64 / 1000.0;
            match outcome {
                Ok(text) => {
                    let Some(chunk) = self.queue.pop_front() else {
                        return;
                    };
                    self.held -= chunk.pcm.len();
                    self.stats.transcribed += 1;
                    self.backoff.succeeded();
                    if self.dropped_unreported > 0 {
                        info!(
                            "stream {stream}: speech-to-text caught up; {:.1} s of audio were \
                             dropped while it was failing",
                            std::mem::take(&mut self.dropped_unreported) as f64 / 1000.0
                        );
                    }
                    let text = text.trim();
                    if text.is_empty() {
                        debug!(
                            "stream {stream}: no speech in {seconds:.1} s of user {}",
                            chunk.user_id
                        );
                        continue;
                    }
                    segment(NewSegment {
                        origin: Origin::Stt,
                        speaker_id: chunk.user_id,
                        speaker_name: chunk.user_name,
                        text: text.to_string(),
                        start_ms: chunk.start_ms,
                        end_ms: Some(chunk.end_ms),
                        language: stt.language.clone(),
                    });
                }
                Err(Failure::Retry(reason)) => {
                    self.backoff.failed(Instant::now());
                    warn!(
                        "stream {stream}: speech-to-text of {seconds:.1} s failed, kept for retry \
                         ({} chunks waiting): {reason}",
                        self.queue.len()
                    );
                    return;
                }
                Err(Failure::Reject(reason)) => {
                    if let Some(chunk) = self.queue.pop_front() {
                        self.held -= chunk.pcm.len();
                    }
                    self.stats.rejected += 1;
                    warn!(
                        "stream {stream}: speech-to-text refused {seconds:.1} s of audio, which \
                         is discarded: {reason}"
                    );
                }
            }
        }
    }
}

/// The service's answer (`response_format=json`).
#[derive(Debug, Deserialize)]
struct Transcription {
    text: String,
}

/// One request: the chunk as `file` (`chunk.wav`, `audio/wav`) plus `model`,
/// `response_format=json` and, when configured, `language`.
fn transcribe(
    format: PcmFormat,
    chunk: &Chunk,
    stt: &SttSettings,
    redact: &Redactor,
    timeouts: zoomhost_sdk::http::Timeouts,
) -> Result<String, Failure> {
    let wav = wav::encode(format, &chunk.pcm).map_err(Failure::Reject)?;
    let mut fields = vec![("model", stt.model.as_str()), ("response_format", "json")];
    if let Some(language) = &stt.language {
        fields.push(("language", language));
    }
    let form = Multipart::new(&fields, "file", "chunk.wav", "audio/wav", &wav);
    let mut request = Request::post(&stt.url)
        .header("user-agent", crate::USER_AGENT)
        .header("accept", "application/json")
        .header("content-type", form.content_type())
        .body(form.body);
    if let Some(key) = &stt.api_key {
        request = request.header("authorization", format!("Bearer {}", key.expose()));
    }
    request.timeouts = timeouts;
    let response = net::send(&request, redact)?;
    response
        .json::<Transcription>()
        .map(|t| t.text)
        .map_err(|err| Failure::Reject(format!("answer is not {{\"text\": ...}} JSON: {err}")))
}

/// A `multipart/form-data` body.
#[derive(Debug)]
struct Multipart {
    boundary: String,
    body: Vec<u8>,
}

impl Multipart {
    /// Text `fields` followed by one file part.
    fn new(
        fields: &[(&str, &str)],
        file_field: &str,
        filename: &str,
        content_type: &str,
        file: &[u8],
    ) -> Self {
        let boundary = boundary_for(file, fields);
        let mut body = Vec::with_capacity(file.len() + 512);
        for (name, value) in fields {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\ncontent-disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                )
                .as_bytes(),
            );
        }
        body.extend_from_slice(
            format!(
                "--{boundary}\r\ncontent-disposition: form-data; name=\"{file_field}\"; \
                 filename=\"{filename}\"\r\ncontent-type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(file);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        Multipart { boundary, body }
    }

    fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={}", self.boundary)
    }
}

/// A boundary that occurs in none of the parts.
fn boundary_for(file: &[u8], fields: &[(&str, &str)]) -> String {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut state = seed ^ (file.len() as u64).rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15;
    loop {
        // splitmix64: cheap, well mixed; uniqueness is what matters here, not secrecy.
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let boundary = format!("zoomhost-{z:016x}{:08x}", state as u32);
        let needle = boundary.as_bytes();
        let clash = file.windows(needle.len()).any(|w| w == needle)
            || fields.iter().any(|(_, v)| v.contains(&boundary));
        if !clash {
            return boundary;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcriber(chunk_s: u32, cap_s: u32) -> Transcriber {
        let settings = crate::settings::load(|k| match k {
            "sink_url" => Some("http://s/".into()),
            "stt_url" => Some("http://t/".into()),
            "stt_chunk_seconds" => Some(chunk_s.to_string()),
            "stt_max_buffered_seconds" => Some(cap_s.to_string()),
            _ => None,
        })
        .unwrap();
        let stt = settings.stt.clone().unwrap();
        // 1000 Hz mono: 2000 bytes per second, 40 bytes per 20 ms frame.
        Transcriber::new(
            PcmFormat {
                sample_rate: 1000,
                channels: 1,
            },
            &stt,
            &settings,
        )
    }

    fn frame(user: u32, ts: u64, fill: u8) -> AudioFrame {
        AudioFrame {
            user_id: user,
            user_name: format!("u{user}"),
            timestamp: ts,
            data: vec![fill; 40],
        }
    }

    #[test]
    fn chunks_per_speaker_with_timestamps() {
        let mut t = transcriber(1, 10);
        for i in 0..75u64 {
            t.add(&frame(1, 1000 + 20 * i, i as u8));
            if i < 50 {
                t.add(&frame(2, 5000 + 20 * i, 200));
            }
        }
        let chunks: Vec<_> = t
            .queue
            .iter()
            .map(|c| (c.user_id, c.start_ms, c.end_ms, c.pcm.len()))
            .collect();
        assert_eq!(chunks, vec![(1, 1000, 2000, 2000), (2, 5000, 6000, 2000)]);
        assert_eq!(t.queue[0].pcm[..40], [0u8; 40]);
        assert_eq!(t.queue[0].pcm[1960..], [49u8; 40]);
        assert_eq!(t.held_bytes(), 2000 * 2 + 25 * 40);
        // Half a second left for user 1: kept at the end (min_final 1 s → discarded).
        assert_eq!(t.finish(), 500);
        assert_eq!(t.waiting(), 2);
        assert_eq!(t.held_bytes(), 4000);
    }

    #[test]
    fn memory_is_bounded_oldest_first() {
        let mut t = transcriber(1, 2);
        let mut dropped = Vec::new();
        for i in 0..150u64 {
            let (added, misaligned) = t.add(&frame(1, 20 * i, 1));
            assert!(!misaligned);
            if added.dropped_ms > 0 {
                dropped.push((i, added));
            }
        }
        // 3 s of audio, 2 s allowed: the first chunk goes when the third second starts.
        assert_eq!(
            dropped,
            vec![(
                100,
                Added {
                    dropped_ms: 1000,
                    first_drops: true
                }
            )]
        );
        assert_eq!(t.stats.dropped_ms, 1000);
        assert_eq!(t.queue[0].start_ms, 1000);
        assert!(t.held_bytes() <= 4000);
        let mut odd = frame(1, 0, 1);
        odd.data.push(9);
        assert!(t.add(&odd).1);
    }

    #[test]
    fn multipart_body_is_well_formed() {
        let form = Multipart::new(
            &[("model", "whisper-1")],
            "file",
            "chunk.wav",
            "audio/wav",
            b"RIFFxx",
        );
        let text = String::from_utf8(form.body.clone()).unwrap();
        let b = &form.boundary;
        assert_eq!(
            text,
            format!(
                "--{b}\r\ncontent-disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n\
                 --{b}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"chunk.wav\"\r\n\
                 content-type: audio/wav\r\n\r\nRIFFxx\r\n--{b}--\r\n"
            )
        );
        assert!(form.content_type().ends_with(b.as_str()));
    }
}
