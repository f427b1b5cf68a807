"""Audio formats for clients: mp3, opus, aac, flac, wav and raw pcm, encoded by PyAV (FFmpeg).

`StreamEncoder` turns 16-bit mono PCM into a format piece by piece: each ``feed`` returns
the bytes that are ready, ``close`` the rest, so audio can be sent sentence by sentence.
Streamed WAV has FFmpeg's unknown-length header (sizes 0xFFFFFFFF); ``pcm`` is raw 16-bit
little-endian mono at 24 kHz, as OpenAI's API sends it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import av


@dataclass(frozen=True)
class Format:
    container: str
    codec: str
    media_type: str
    rate: int | None = None  # the encoder's sample rate; None: the engine's own
    options: tuple[tuple[str, str], ...] = ()


FORMATS = {
    "mp3": Format("mp3", "libmp3lame", "audio/mpeg"),
    # Ogg pages every 100 ms (FFmpeg's default is 1 s): the stream reaches the client in time
    "opus": Format("ogg", "libopus", "audio/ogg", 48000, (("page_duration", "100000"),)),
    "aac": Format("adts", "aac", "audio/aac"),
    "flac": Format("flac", "flac", "audio/flac"),
    "wav": Format("wav", "pcm_s16le", "audio/wav"),
    "pcm": Format("s16le", "pcm_s16le", "audio/pcm", 24000),
}


class _Sink(io.RawIOBase):
    """A write-only, non-seekable file for FFmpeg: what it writes is taken as it comes."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data) -> int:  # type: ignore[override]
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


class StreamEncoder:
    def __init__(self, name: str, sample_rate: int) -> None:
        fmt = FORMATS[name]
        self.media_type = fmt.media_type
        self.rate = sample_rate
        self.sink = _Sink()
        self.container = av.open(self.sink, mode="w", format=fmt.container,
                                  options=dict(fmt.options))
        out_rate = fmt.rate or sample_rate
        self.stream = self.container.add_stream(fmt.codec, rate=out_rate, layout="mono")
        ctx = self.stream.codec_context
        self.resampler = av.AudioResampler(format=ctx.format.name, layout="mono", rate=out_rate)
        self.closed = False

    def feed(self, pcm: bytes) -> bytes:
        """Encode 16-bit mono samples at the engine's rate; the bytes ready so far."""
        samples = len(pcm) // 2
        if samples:
            frame = av.AudioFrame(format="s16", layout="mono", samples=samples)
            frame.planes[0].update(pcm[: samples * 2])
            frame.sample_rate = self.rate
            self._encode(self.resampler.resample(frame))
        return self.sink.take()

    def close(self) -> bytes:
        """Flush the encoder and the container; the last bytes."""
        if not self.closed:
            self.closed = True
            self._encode(self.resampler.resample(None))
            for packet in self.stream.encode(None):
                self.container.mux(packet)
            self.container.close()
        return self.sink.take()

    def _encode(self, frames) -> None:
        for frame in frames:
            for packet in self.stream.encode(frame):
                self.container.mux(packet)


def encode(name: str, pcm: bytes, sample_rate: int) -> bytes:
    """A whole file (WAV with its real sizes: the stdlib writer, as before)."""
    if name == "wav":
        from tts_server.audio import encode_wav

        return encode_wav(pcm, sample_rate)
    enc = StreamEncoder(name, sample_rate)
    return enc.feed(pcm) + enc.close()
