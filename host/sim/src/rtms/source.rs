//! What a simulated stream sends: the confirmed audio format, precomputed audio payloads
//! (tones, or a WAV file), and the canned transcript, video, share and chat items.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use zoomhost_protocol::rtms::media::{codec, content_type, data_opt, key, resolution, sample_rate};
use zoomhost_protocol::rtms::msg;

use super::{DataOpt, SimParticipant};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The audio params the server confirmed (and generates frames in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct AudioFormat {
    pub codec: u64,
    pub sample_rate: u64,
    pub channels: u16,
    pub data_opt: u64,
    pub send_rate: u32,
}

impl AudioFormat {
    pub fn rate_hz(&self) -> u32 {
        sample_rate::HZ[self.sample_rate as usize]
    }

    /// Bytes of one frame (L16).
    pub fn frame_bytes(&self) -> usize {
        (self.rate_hz() as usize * self.channels as usize * 2 * self.send_rate as usize) / 1000
    }

    fn describe(&self) -> String {
        format!(
            "{} Hz {}",
            self.rate_hz(),
            if self.channels == 1 { "mono" } else { "stereo" }
        )
    }

    /// Reads the format back from confirmed params; `Err` names the bad field.
    fn from_params(params: &Map<String, Value>) -> Result<AudioFormat, String> {
        let field = |name: &str| {
            params
                .get(name)
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("audio param `{name}` must be a non-negative integer"))
        };
        let sample_rate = field("sample_rate")?;
        if sample_rate as usize >= sample_rate::HZ.len() {
            return Err(format!("audio sample_rate {sample_rate} is not 0..=3"));
        }
        let channels = field("channel")?;
        if !(1..=2).contains(&channels) {
            return Err(format!("audio channel {channels} is not 1 or 2"));
        }
        let data_opt = field("data_opt")?;
        if !(1..=2).contains(&data_opt) {
            return Err(format!("audio data_opt {data_opt} is not 1 or 2"));
        }
        let send_rate = field("send_rate")?;
        if send_rate == 0 || send_rate % 20 != 0 || send_rate > 1000 {
            return Err(format!(
                "audio send_rate {send_rate} is not a multiple of 20 ms up to 1000"
            ));
        }
        Ok(AudioFormat {
            codec: field("codec")?,
            sample_rate,
            channels: channels as u16,
            data_opt,
            send_rate: send_rate as u32,
        })
    }
}

/// A WAV file loaded as an audio source.
#[derive(Debug, Clone)]
pub(super) struct WavAudio {
    pub path: PathBuf,
    pub sample_rate: u64,
    pub channels: u16,
    /// Interleaved L16 little-endian samples.
    pub pcm: Bytes,
}

impl WavAudio {
    pub fn load(path: &Path) -> anyhow::Result<WavAudio> {
        let reader = hound::WavReader::open(path)
            .with_context(|| format!("opening WAV {}", path.display()))?;
        let spec = reader.spec();
        anyhow::ensure!(
            spec.sample_format == hound::SampleFormat::Int && spec.bits_per_sample == 16,
            "WAV {}: {}-bit {:?} samples; RTMS audio needs 16-bit PCM",
            path.display(),
            spec.bits_per_sample,
            spec.sample_format
        );
        let sample_rate = sample_rate::code(spec.sample_rate)
            .with_context(|| {
                format!(
                    "WAV {}: {} Hz; RTMS audio is 8000, 16000, 32000 or 48000 Hz (no resampling)",
                    path.display(),
                    spec.sample_rate
                )
            })?
            .into();
        anyhow::ensure!(
            (1..=2).contains(&spec.channels),
            "WAV {}: {} channels; RTMS audio is mono or stereo",
            path.display(),
            spec.channels
        );
        let mut pcm = Vec::with_capacity(reader.len() as usize * 2);
        for sample in reader.into_samples::<i16>() {
            let sample = sample.with_context(|| format!("reading WAV {}", path.display()))?;
            pcm.extend_from_slice(&sample.to_le_bytes());
        }
        anyhow::ensure!(!pcm.is_empty(), "WAV {}: no samples", path.display());
        Ok(WavAudio {
            path: path.to_path_buf(),
            sample_rate,
            channels: spec.channels,
            pcm: Bytes::from(pcm),
        })
    }

    /// Length in 20 ms frames (rounded up).
    pub fn frames_20ms(&self) -> u32 {
        let per_frame =
            sample_rate::HZ[self.sample_rate as usize] as usize * self.channels as usize * 2 / 50;
        self.pcm.len().div_ceil(per_frame) as u32
    }
}

/// The stream's audio input, as configured.
#[derive(Debug, Clone)]
pub(super) enum AudioInput {
    Tone,
    Wav(WavAudio),
    /// A WAV that could not be used: every audio handshake fails with this reason.
    Broken(String),
}

/// One audio source's precomputed payloads.
struct SourcePlan {
    user_id: u32,
    user_name: String,
    /// `{"msg_type":14,"content":{"user_id":..,"user_name":..,"length":..,"data":"`
    head: String,
    pcm: Pcm,
}

enum Pcm {
    /// Every frame is these bytes; `tail` is the base64 data and `","timestamp":`.
    Tone { frame: Bytes, tail: String },
    /// Frame `i` is `pcm[(i % frames) * frame_bytes ..][..frame_bytes]`.
    Wav { pcm: Bytes, frames: u32 },
}

/// The confirmed audio format of a stream and its payloads, fixed at the first audio
/// handshake.
pub(super) struct AudioPlan {
    pub format: AudioFormat,
    /// The `audio` object of msg 4's `media_params`.
    pub params: Value,
    sources: Vec<SourcePlan>,
    frame_bytes: usize,
}

impl AudioPlan {
    /// The effective params for `requested` (the client's `media_params.audio`), merged
    /// with `confirm` and checked against the input. `Err` is the handshake's reason.
    pub fn new(
        input: &AudioInput,
        participants: &[SimParticipant],
        data_opt: DataOpt,
        confirm: Option<&Value>,
        requested: &Value,
    ) -> Result<AudioPlan, String> {
        let asked = |name: &str| requested.get(name).and_then(Value::as_u64);
        let mut sample_rate = asked("sample_rate")
            .filter(|r| *r < sample_rate::HZ.len() as u64)
            .unwrap_or(sample_rate::KHZ_16.into());
        let mut channel = asked("channel")
            .filter(|c| (1..=2).contains(c))
            .unwrap_or(1);
        if let AudioInput::Wav(wav) = input {
            sample_rate = wav.sample_rate;
            channel = u64::from(wav.channels);
        }
        let mixed = u64::from(data_opt::AUDIO_MIXED);
        let data_opt = match data_opt {
            DataOpt::Mixed => mixed,
            DataOpt::PerSpeaker => data_opt::AUDIO_PER_SPEAKER.into(),
            DataOpt::AsRequested => asked("data_opt")
                .filter(|d| (1..=2).contains(d))
                .unwrap_or(mixed),
        };
        let send_rate = asked("send_rate")
            .filter(|r| *r > 0 && r % 20 == 0 && *r <= 1000)
            .unwrap_or(20);
        let mut params = Map::new();
        params.insert("content_type".into(), content_type::RAW_AUDIO.into());
        params.insert("codec".into(), codec::L16.into());
        params.insert("sample_rate".into(), sample_rate.into());
        params.insert("channel".into(), channel.into());
        params.insert("data_opt".into(), data_opt.into());
        params.insert("send_rate".into(), send_rate.into());
        if let Some(Value::Object(overrides)) = confirm {
            for (k, v) in overrides {
                params.insert(k.clone(), v.clone());
            }
        }
        let format = AudioFormat::from_params(&params)
            .map_err(|e| format!("the confirmed audio params are unusable: {e}"))?;
        let frame_bytes = format.frame_bytes();
        let mixed_only = format.data_opt == mixed || participants.is_empty();
        let sources = match input {
            AudioInput::Broken(reason) => return Err(reason.clone()),
            AudioInput::Wav(wav) => {
                if (wav.sample_rate, wav.channels) != (format.sample_rate, format.channels) {
                    let theirs = AudioFormat {
                        sample_rate: wav.sample_rate,
                        channels: wav.channels,
                        ..format
                    };
                    return Err(format!(
                        "audio source {} is {} but the confirmed params say {} (the simulator does not resample)",
                        wav.path.display(),
                        theirs.describe(),
                        format.describe()
                    ));
                }
                // Pad to whole frames once, so every frame is a zero-copy slice.
                let frames = wav.pcm.len().div_ceil(frame_bytes);
                let mut pcm = wav.pcm.to_vec();
                pcm.resize(frames * frame_bytes, 0);
                let pcm = Bytes::from(pcm);
                let wav_source = |p: Option<&SimParticipant>| {
                    let frames = frames as u32;
                    source(
                        p,
                        frame_bytes,
                        Pcm::Wav {
                            pcm: pcm.clone(),
                            frames,
                        },
                    )
                };
                if mixed_only {
                    vec![wav_source(None)]
                } else {
                    participants.iter().map(|p| wav_source(Some(p))).collect()
                }
            }
            AudioInput::Tone => {
                let tone_source = |p: Option<&SimParticipant>, freqs: &[u32]| {
                    let frame = Bytes::from(tone_frame(&format, freqs));
                    let mut tail = String::with_capacity(frame.len() * 4 / 3 + 20);
                    B64.encode_string(&frame, &mut tail);
                    tail.push_str("\",\"timestamp\":");
                    source(p, frame_bytes, Pcm::Tone { frame, tail })
                };
                let freqs: Vec<u32> = (0..participants.len().max(1)).map(tone_hz).collect();
                if mixed_only {
                    vec![tone_source(None, &freqs)]
                } else {
                    participants
                        .iter()
                        .zip(&freqs)
                        .map(|(p, f)| tone_source(Some(p), std::slice::from_ref(f)))
                        .collect()
                }
            }
        };
        Ok(AudioPlan {
            format,
            params: Value::Object(params),
            sources,
            frame_bytes,
        })
    }

    /// How many audio sources (1 mixed, or one per participant).
    pub fn sources(&self) -> u32 {
        self.sources.len() as u32
    }

    /// The user of a source.
    pub fn user(&self, source: usize) -> (u32, &str) {
        let s = &self.sources[source];
        (s.user_id, &s.user_name)
    }

    /// The decoded bytes of `source`'s frame `frame`.
    pub fn frame(&self, source: usize, frame: u32) -> Bytes {
        match &self.sources[source].pcm {
            Pcm::Tone { frame, .. } => frame.clone(),
            Pcm::Wav { pcm, frames } => {
                let start = (frame % frames) as usize * self.frame_bytes;
                pcm.slice(start..start + self.frame_bytes)
            }
        }
    }

    /// The `MEDIA_DATA_AUDIO` message of `source`'s frame `frame`, stamped `timestamp`.
    pub fn message(&self, source: usize, frame: u32, timestamp: u64) -> String {
        let s = &self.sources[source];
        match &s.pcm {
            Pcm::Tone { tail, .. } => {
                let mut out = String::with_capacity(s.head.len() + tail.len() + 24);
                out.push_str(&s.head);
                out.push_str(tail);
                let _ = write!(out, "{timestamp}}}}}");
                out
            }
            Pcm::Wav { .. } => {
                let bytes = self.frame(source, frame);
                let mut out = String::with_capacity(s.head.len() + bytes.len() * 4 / 3 + 40);
                out.push_str(&s.head);
                B64.encode_string(&bytes, &mut out);
                let _ = write!(out, "\",\"timestamp\":{timestamp}}}}}");
                out
            }
        }
    }
}

fn source(participant: Option<&SimParticipant>, frame_bytes: usize, pcm: Pcm) -> SourcePlan {
    let (user_id, user_name) = participant.map_or((0, ""), |p| (p.user_id, p.user_name.as_str()));
    let name = Value::from(user_name).to_string();
    let head = format!(
        "{{\"msg_type\":{},\"content\":{{\"user_id\":{user_id},\"user_name\":{name},\"length\":{frame_bytes},\"data\":\"",
        msg::MEDIA_DATA_AUDIO
    );
    SourcePlan {
        user_id,
        user_name: user_name.to_string(),
        head,
        pcm,
    }
}

/// Participant `i`'s tone: a multiple of 50 Hz, so every 20 ms frame holds whole
/// periods and all frames are identical; below 4 kHz (Nyquist at 8 kHz).
fn tone_hz(i: usize) -> u32 {
    300 + 100 * (i % 30) as u32
}

/// One frame of the mean of sines at `freqs`, L16 little-endian, interleaved.
fn tone_frame(format: &AudioFormat, freqs: &[u32]) -> Vec<u8> {
    let rate = format.rate_hz() as f64;
    let samples = format.frame_bytes() / 2 / format.channels as usize;
    let amplitude = 0.5 * f64::from(i16::MAX) / freqs.len() as f64;
    let mut out = Vec::with_capacity(format.frame_bytes());
    for n in 0..samples {
        let t = n as f64 / rate;
        let v: f64 = freqs
            .iter()
            .map(|&f| (2.0 * std::f64::consts::PI * f64::from(f) * t).sin())
            .sum();
        let sample = (v * amplitude).round() as i16;
        for _ in 0..format.channels {
            out.extend_from_slice(&sample.to_le_bytes());
        }
    }
    out
}

/// The canned transcript lines, used in turn.
const SENTENCES: [&str; 10] = [
    "Good morning everyone, let's get started.",
    "The release candidate passed all the integration tests overnight.",
    "Can we move the design review to Thursday afternoon?",
    "I shared the dashboard link in the chat a minute ago.",
    "Latency on the media path is down to about forty milliseconds.",
    "We still need an owner for the on-call rotation next week.",
    "Let's take that offline and follow up by email.",
    "The customer asked for a demo of the transcript export.",
    "I'll update the ticket and ping the team when it's merged.",
    "Thanks all, that's everything on the agenda for today.",
];

/// Transcript segment `n`'s text.
pub(super) fn sentence(n: u64) -> &'static str {
    SENTENCES[(n % SENTENCES.len() as u64) as usize]
}

/// The fake payload of video / share item `n` (not a real codec frame).
pub(super) fn fake_frame(kind: &str, n: u64) -> Bytes {
    Bytes::from(format!("sim-{kind}-frame-{n}").into_bytes())
}

/// Chat item `n`'s text.
pub(super) fn chat_text(n: u64, from: &str) -> String {
    format!(
        "Chat message {} from {}",
        n + 1,
        if from.is_empty() { "someone" } else { from }
    )
}

/// The effective params of a non-audio kind: the client's request echoed, with
/// defaults for what it left out.
pub(super) fn other_params(kind_key: &str, requested: Option<&Value>) -> Value {
    let mut params = match requested {
        Some(Value::Object(o)) => o.clone(),
        _ => Map::new(),
    };
    let defaults = match kind_key {
        // Language identification is on unless the client turns it off (Feb 2026).
        key::TRANSCRIPT => json!({"content_type": content_type::TEXT, "enable_lid": true}),
        key::CHAT => json!({"content_type": content_type::TEXT}),
        // H.264, 720p, 25 fps: what Zoom's samples request.
        _ => json!({
            "content_type": content_type::RAW_VIDEO,
            "codec": codec::H264,
            "resolution": resolution::HD,
            "fps": 25
        }),
    };
    if let Value::Object(defaults) = defaults {
        for (k, v) in defaults {
            params.entry(k).or_insert(v);
        }
    }
    Value::Object(params)
}
