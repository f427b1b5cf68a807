"""Engine selection: ``espeak``, ``piper``, ``coqui``, or ``hybrid`` (best available)."""

from __future__ import annotations

import importlib.util

from tts_server.engines.base import Engine, EngineUnavailable


def create_engine(name: str, *, enable_coqui: bool = False, coqui_model: str | None = None,
                  espeak_source: str = "auto", voices_dir: str | None = None,
                  threads: int = 0, solo_threads: int = 0, busy=None) -> tuple[Engine, str]:
    """The engine and a one-line note on why it was chosen."""
    if name == "espeak":
        from tts_server.engines.espeak import EspeakEngine

        return EspeakEngine(espeak_source), "requested"
    if name == "piper":
        from tts_server.engines.piper import PiperEngine

        return PiperEngine(voices_dir, threads, solo_threads, busy), "requested"
    if name == "coqui":
        from tts_server.engines.coqui import CoquiEngine

        return CoquiEngine(coqui_model), "requested"
    if name != "hybrid":
        raise EngineUnavailable(f"unknown engine {name!r}: use hybrid, espeak, piper or coqui")
    notes = []
    if enable_coqui:
        from tts_server.engines.coqui import DEFAULT_MODEL, CoquiEngine, coqui_available

        ok, why = coqui_available(coqui_model or DEFAULT_MODEL)
        if ok:
            return CoquiEngine(coqui_model), "hybrid: coqui enabled and available"
        notes.append(why)
    from tts_server.engines.piper import piper_installed

    if piper_installed() or (voices_dir and importlib.util.find_spec("piper")):
        from tts_server.engines.piper import PiperEngine

        return (PiperEngine(voices_dir, threads, solo_threads, busy),
                "; ".join([*notes, "hybrid: piper installed"]))
    from tts_server.engines.espeak import EspeakEngine

    notes.append("hybrid: piper not installed, using espeak")
    return EspeakEngine(espeak_source), "; ".join(notes)
