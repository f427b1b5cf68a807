"""espeak-ng through its C library (ctypes), from the system or from the espeakng-loader wheel.

The library synthesizes into a callback in the calling thread; it keeps global state,
so calls are serialized by the caller. Text goes in as UTF-8 characters with SSML off:
it is spoken literally, never parsed as options or markup.
"""

from __future__ import annotations

import array
import ctypes
import ctypes.util
import logging
import os
import threading
from pathlib import Path

from tts_server.engines.base import Audio, BadRequest, EngineUnavailable, Voice

log = logging.getLogger("tts_server")
SILENCE_PEAK = 100  # a 16-bit sample peak below this is silence, not speech
AUDIO_OUTPUT_SYNCHRONOUS = 2
POS_CHARACTER = 1
CHARS_UTF8 = 1
PARAM_RATE = 1
RATE_MIN, RATE_MAX = 80, 450

_SYNTH_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.c_void_p)


class _VoiceStruct(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


def find_library(source: str) -> tuple[str, str | None, str]:
    """(library path, data path or None, description) for ``auto|system|bundled``."""
    if source in ("auto", "system"):
        system = ctypes.util.find_library("espeak-ng")
        if system:
            return system, None, f"system {system}"
        if source == "system":
            raise EngineUnavailable(
                "espeak: the system library libespeak-ng is not installed;"
                " apt-get install espeak-ng, or use --espeak-source bundled"
            )
    try:
        import espeakng_loader
    except ImportError:
        raise EngineUnavailable(
            "espeak: no espeak-ng library found; apt-get install espeak-ng,"
            " or pip install espeakng-loader"
        ) from None
    lib = espeakng_loader.get_library_path()
    data = espeakng_loader.get_data_path()
    return lib, data, f"bundled espeakng-loader {Path(lib).parent}"


class EspeakEngine:
    name = "espeak"
    _loaded: dict[str, ctypes.CDLL] = {}

    def __init__(self, source: str = "auto", default_voice: str = "en") -> None:
        lib_path, data_path, self.description = find_library(source)
        try:
            self.lib = ctypes.CDLL(lib_path)
        except OSError as exc:
            raise EngineUnavailable(f"espeak: cannot load {lib_path}: {exc}") from None
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                               ctypes.c_int]
        self.lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_VoiceStruct))
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint,
                                          ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
                                          ctypes.c_void_p, ctypes.c_void_p]
        # espeak_Initialize's path is the directory that *contains* espeak-ng-data
        parent = str(Path(data_path).parent).encode() if data_path else None
        rate = self.lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, parent, 0)
        if rate <= 0:
            raise EngineUnavailable(f"espeak: initialisation failed ({self.description})")
        self.sample_rate = rate
        self._chunks: list[bytes] = []
        self._callback = _SYNTH_CB(self._collect)
        self.lib.espeak_SetSynthCallback(self._callback)
        self._lock = threading.Lock()
        self._current: str | None = None
        self._voices = self._speaking(self._list_voices())
        self._names = {v.name for v in self._voices} | {v.language for v in self._voices}
        self.default_voice = default_voice

    def _collect(self, wav, numsamples, _events) -> int:
        if wav and numsamples > 0:
            self._chunks.append(ctypes.string_at(wav, numsamples * 2))
        return 0

    def _list_voices(self) -> list[Voice]:
        voices = []
        arr = self.lib.espeak_ListVoices(None)
        i = 0
        while arr[i]:
            v = arr[i].contents
            # languages: a priority byte, then a NUL-terminated language name
            lang = ctypes.string_at(v.languages + 1).decode() if v.languages else ""
            gender = {1: "male", 2: "female"}.get(v.gender)
            ident = (v.identifier or b"").decode()
            voices.append(Voice(name=ident.split("/")[-1] or lang, language=lang, gender=gender))
            i += 1
        return sorted(voices, key=lambda v: v.name)

    def _speaking(self, voices: list[Voice]) -> list[Voice]:
        """The voices that make sound. A voice whose language has no dictionary of its own
        in the data is tried once (a few ms each): some use another language's dictionary,
        others speak only silence because their data is missing (fo, kaa, xex in the
        bundled data), and those must not be offered."""
        self.lib.espeak_Info.restype = ctypes.c_char_p
        self.lib.espeak_Info.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
        path = ctypes.c_char_p()
        self.lib.espeak_Info(ctypes.byref(path))
        try:
            dicts = {f[:-5] for f in os.listdir(path.value.decode()) if f.endswith("_dict")}
        except (OSError, AttributeError, UnicodeDecodeError):
            dicts = set()
        self._names = {v.name for v in voices}
        speaking = []
        for voice in voices:
            if voice.language.split("-")[0] in dicts or self._speaks(voice.name):
                speaking.append(voice)
            else:
                log.warning(f"voice {voice.name!r} speaks only silence here (its data is"
                            " missing): not offered", extra={"event": "voice_dropped",
                                                             "voice": voice.name})
        self._current = None
        return speaking

    def _speaks(self, voice: str) -> bool:
        try:
            audio = self.synthesize("a b c", voice, None)
        except Exception:  # a voice that cannot even be set is no voice
            return False
        samples = array.array("h", audio.pcm[: len(audio.pcm) // 2 * 2])
        return bool(samples) and max(map(abs, samples)) >= SILENCE_PEAK

    def fingerprint(self, voice: str | None) -> str:
        # the library and its data decide the audio: the description names both
        return f"espeak-ng {self.description} voice={voice or ''}"

    def voices(self) -> list[Voice]:
        return list(self._voices)

    def synthesize(self, text: str, voice: str | None, rate: int | None) -> Audio:
        voice = voice or self.default_voice
        if voice not in self._names:
            raise BadRequest(f"unknown voice {voice!r}", "voice",
                             valid=sorted(v.name for v in self._voices))
        if rate is not None and not RATE_MIN <= rate <= RATE_MAX:
            raise BadRequest(f"rate must be {RATE_MIN}-{RATE_MAX} words per minute (got {rate})",
                             "rate")
        data = text.encode("utf-8") + b"\0"
        with self._lock:
            if voice != self._current:
                if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                    raise BadRequest(f"unknown voice {voice!r}", "voice")
                self._current = voice
            self.lib.espeak_SetParameter(PARAM_RATE, rate or 175, 0)
            self._chunks = []
            err = self.lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, CHARS_UTF8,
                                        None, None)
            if err != 0:
                raise RuntimeError(f"espeak_Synth failed with code {err}")
            pcm = b"".join(self._chunks)
            self._chunks = []
        return Audio(pcm, self.sample_rate)
