"""The engine protocol every synthesis engine implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class EngineUnavailable(Exception):
    """The engine cannot run here; the message is one line saying why and what to do."""


class BadRequest(ValueError):
    """The request cannot be synthesized (unknown voice, rate out of range)."""

    def __init__(self, message: str, field: str, **extra: object) -> None:
        super().__init__(message)
        self.field = field
        self.extra = extra


@dataclass
class Voice:
    name: str
    language: str
    gender: str | None = None


@dataclass
class Audio:
    pcm: bytes  # 16-bit signed little-endian mono
    sample_rate: int
    session: str | None = None  # which of the engine's sessions spoke it (piper: solo, shared)


class Engine(Protocol):
    name: str

    def voices(self) -> list[Voice]: ...

    def synthesize(self, text: str, voice: str | None, rate: int | None) -> Audio:
        """Blocking synthesis; called from a worker thread, one call at a time per engine."""
        ...

    def fingerprint(self, voice: str | None) -> str:
        """What identifies the audio ``voice`` makes (the engine, its library or model
        file's digest): a part of the audio cache's key. Raises `BadRequest` for an
        unknown voice."""
        ...
