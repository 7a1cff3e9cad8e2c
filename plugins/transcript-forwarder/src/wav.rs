//! 16-bit PCM audio wrapped in a WAV (RIFF/WAVE) file, in memory, with `hound`.

use std::io::Cursor;

/// The shape of 16-bit little-endian PCM audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcmFormat {
    /// Samples per second per channel.
    pub sample_rate: u32,
    /// Interleaved channels.
    pub channels: u16,
}

impl PcmFormat {
    /// Bytes of one sample frame (one sample of every channel).
    pub fn block_align(&self) -> usize {
        usize::from(self.channels) * 2
    }

    /// Bytes of one second of audio.
    pub fn bytes_per_second(&self) -> u64 {
        u64::from(self.sample_rate) * self.block_align() as u64
    }

    /// Milliseconds of audio in `bytes` (rounded down).
    pub fn millis(&self, bytes: usize) -> u64 {
        (bytes as u64).saturating_mul(1000) / self.bytes_per_second().max(1)
    }
}

/// Samples handed to `hound` per internal buffer, to keep its scratch space small.
const SAMPLES_PER_WRITE: usize = 8192;

/// A WAV file holding `pcm` (16-bit little-endian samples, channels interleaved; a
/// trailing partial sample frame is left out). Mono and stereo get the classic 44-byte
/// `WAVE_FORMAT_PCM` header.
pub fn encode(format: PcmFormat, pcm: &[u8]) -> Result<Vec<u8>, String> {
    let usable = pcm.len() - pcm.len() % format.block_align().max(2);
    let spec = hound::WavSpec {
        channels: format.channels,
        sample_rate: format.sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let fail = |err: hound::Error| format!("writing WAV failed: {err}");
    let mut out = Cursor::new(Vec::with_capacity(44 + usable));
    let mut writer = hound::WavWriter::new(&mut out, spec).map_err(fail)?;
    // Whole sample frames per piece, so `get_i16_writer`'s channel check holds.
    let piece = SAMPLES_PER_WRITE - SAMPLES_PER_WRITE % usize::from(format.channels.max(1));
    for samples in pcm[..usable].chunks(piece * 2) {
        let count = u32::try_from(samples.len() / 2).map_err(|_| "WAV piece too large")?;
        let mut w = writer.get_i16_writer(count);
        for s in samples.chunks_exact(2) {
            w.write_sample(i16::from_le_bytes([s[0], s[1]]));
        }
        w.flush().map_err(fail)?;
    }
    writer.finalize().map_err(fail)?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(b: &[u8], i: usize) -> u16 {
        u16::from_le_bytes([b[i], b[i + 1]])
    }
    fn u32_at(b: &[u8], i: usize) -> u32 {
        u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
    }

    #[test]
    fn header_and_data_are_exact() {
        let format = PcmFormat {
            sample_rate: 8000,
            channels: 2,
        };
        let pcm: Vec<u8> = (0..40_000u32).map(|i| (i * 31 % 256) as u8).collect();
        let wav = encode(format, &pcm).unwrap();
        assert_eq!(&wav[0..4], b"RIFF");
        assert_eq!(u32_at(&wav, 4) as usize, wav.len() - 8);
        assert_eq!(&wav[8..16], b"WAVEfmt ");
        assert_eq!(u32_at(&wav, 16), 16);
        assert_eq!(u16_at(&wav, 20), 1, "PCM");
        assert_eq!(u16_at(&wav, 22), 2);
        assert_eq!(u32_at(&wav, 24), 8000);
        assert_eq!(u32_at(&wav, 28), 32_000);
        assert_eq!(u16_at(&wav, 32), 4);
        assert_eq!(u16_at(&wav, 34), 16);
        assert_eq!(&wav[36..40], b"data");
        assert_eq!(u32_at(&wav, 40), 40_000);
        assert_eq!(&wav[44..], &pcm[..]);
        assert_eq!(format.millis(32_000), 1000);
    }

    #[test]
    fn partial_sample_frames_are_left_out() {
        let format = PcmFormat {
            sample_rate: 16000,
            channels: 1,
        };
        let wav = encode(format, &[1, 2, 3]).unwrap();
        assert_eq!(wav.len(), 46);
        assert_eq!(&wav[44..], &[1, 2]);
    }
}
