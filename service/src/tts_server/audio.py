"""WAV encoding and the checks that prove audio is real speech (valid, long enough, not silent)."""

from __future__ import annotations

import array
import io
import math
import struct
import wave
from dataclasses import dataclass


def encode_wav(pcm: bytes, sample_rate: int, channels: int = 1) -> bytes:
    """16-bit PCM samples to a RIFF/WAVE file with real sizes in its header."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm)
    return buf.getvalue()


@dataclass
class WavInfo:
    sample_rate: int
    channels: int
    sample_width: int
    frames: int
    rms: float

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def inspect_wav(data: bytes) -> WavInfo:
    """Parse a WAV file; raises ValueError if it is not 16-bit PCM RIFF/WAVE."""
    if len(data) < 44 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE file")
    riff_size = struct.unpack_from("<I", data, 4)[0]
    if riff_size != len(data) - 8:
        raise ValueError(f"RIFF size {riff_size} does not match the file ({len(data) - 8})")
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            width, rate, channels = w.getsampwidth(), w.getframerate(), w.getnchannels()
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"invalid WAV: {exc}") from None
    if width != 2:
        raise ValueError(f"expected 16-bit samples (got {8 * width}-bit)")
    samples = array.array("h")
    samples.frombytes(frames[: len(frames) // 2 * 2])
    n = len(samples) // channels if channels else 0
    rms = math.sqrt(sum(s * s for s in samples) / len(samples)) if samples else 0.0
    return WavInfo(rate, channels, width, n, rms)


def check_speech(data: bytes, min_duration: float = 0.2, min_rms: float = 50.0) -> WavInfo:
    """Raise ValueError unless ``data`` is a valid WAV of audible, non-trivial length."""
    info = inspect_wav(data)
    if info.duration_s < min_duration:
        raise ValueError(f"audio too short ({info.duration_s:.3f}s)")
    if info.rms < min_rms:
        raise ValueError(f"audio is silent (rms {info.rms:.1f})")
    return info
