"""Coqui TTS, optional: only a model already present locally is used; never a download.

When coqui TTS or the model is missing, start-up fails with one line.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from tts_server.engines.base import Audio, BadRequest, EngineUnavailable, Voice

DEFAULT_MODEL = "tts_models/en/ljspeech/tacotron2-DDC"


def model_dir(model: str) -> Path:
    """Where coqui keeps a downloaded model (``$TTS_HOME`` or the XDG data dir)."""
    base = os.environ.get("TTS_HOME") or os.environ.get("XDG_DATA_HOME") or str(
        Path.home() / ".local" / "share"
    )
    return Path(base) / "tts" / model.replace("/", "--")


def coqui_available(model: str) -> tuple[bool, str]:
    import importlib.util

    if importlib.util.find_spec("TTS") is None:
        return False, "coqui: the TTS package is not installed (pip install 'tts-server[coqui]')"
    if not model_dir(model).is_dir():
        return False, (f"coqui: model {model!r} is not available locally (looked in"
                       f" {model_dir(model)}); tts-server never downloads models")
    return True, "ok"


class CoquiEngine:
    name = "coqui"

    def __init__(self, model: str | None = None) -> None:
        model = model or DEFAULT_MODEL
        ok, why = coqui_available(model)
        if not ok:
            raise EngineUnavailable(why)
        os.environ.setdefault("COQUI_TOS_AGREED", "1")
        from TTS.api import TTS  # pragma: no cover - needs a local model

        path = model_dir(model)
        self.tts = TTS(model_path=str(path / "model_file.pth"),
                       config_path=str(path / "config.json"), progress_bar=False)
        self.sample_rate = self.tts.synthesizer.output_sample_rate
        self.description = f"coqui {model}"
        self._lock = threading.Lock()

    def voices(self) -> list[Voice]:
        return [Voice(name="default", language="en")]

    def synthesize(self, text: str, voice: str | None, rate: int | None) -> Audio:
        import array

        if voice not in (None, "default"):
            raise BadRequest(f"unknown voice {voice!r}", "voice", valid=["default"])
        with self._lock:
            wav = self.tts.tts(text)
        samples = array.array("h", (max(-32768, min(32767, int(x * 32767))) for x in wav))
        return Audio(samples.tobytes(), self.sample_rate)
