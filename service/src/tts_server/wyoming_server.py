"""The Wyoming protocol (Home Assistant's voice services), beside HTTP: ``--wyoming-uri``.

``Describe`` is answered with ``Info`` listing the engine's voices; ``Synthesize`` with
``AudioStart``, one ``AudioChunk`` per sentence as it is synthesized, and ``AudioStop``;
the streaming form (``SynthesizeStart``, ``SynthesizeChunk`` ..., ``SynthesizeStop``) is
spoken sentence by sentence too and ends with ``SynthesizeStopped``. Events come from the
``wyoming`` package. The socket is bound by the main process, so every worker serves it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import urllib.parse
from typing import Any

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Attribution, Describe, Info, TtsProgram, TtsVoice
from wyoming.server import AsyncEventHandler
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
)

from tts_server import __version__

log = logging.getLogger("tts_server")
ATTRIBUTION = Attribution(name="tts-ops", url="https://github.com/")


def bind(uri: str) -> socket.socket:
    """The listening socket for ``tcp://HOST:PORT``; ValueError names what is wrong."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme != "tcp" or not parts.hostname or parts.port is None:
        raise ValueError(f"--wyoming-uri must be tcp://HOST:PORT (got {uri!r})")
    family = socket.AF_INET6 if ":" in parts.hostname else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # two generations of a service (a deploy) both bind it; a connection queued on the one
    # that stops is reset, and Wyoming clients (Home Assistant) connect again
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((parts.hostname, parts.port))
    sock.listen(128)
    return sock


def info(state: Any) -> Info:
    voices = [TtsVoice(name=v.name, description=v.name, attribution=ATTRIBUTION,
                       installed=True, version=None, languages=[v.language])
              for v in state.engine.voices()]
    return Info(tts=[TtsProgram(name=f"tts-server ({state.engine.name})",
                                description="tts-ops reference TTS server",
                                attribution=ATTRIBUTION, installed=True, version=__version__,
                                voices=voices, supports_synthesize_streaming=True)])


class Handler(AsyncEventHandler):
    def __init__(self, state: Any, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        super().__init__(reader, writer)
        self.state = state
        self.streaming: dict[str, Any] | None = None  # voice and text of a streamed request

    async def handle_event(self, event: Event) -> bool:
        if Describe.is_type(event.type):
            await self.write_event(info(self.state).event())
        elif Synthesize.is_type(event.type):
            if self.streaming is None:  # the one-shot form (streaming clients send both)
                request = Synthesize.from_event(event)
                await self.speak(request.text, request.voice.name if request.voice else None)
        elif SynthesizeStart.is_type(event.type):
            start = SynthesizeStart.from_event(event)
            self.streaming = {"voice": start.voice.name if start.voice else None, "text": ""}
        elif SynthesizeChunk.is_type(event.type) and self.streaming is not None:
            self.streaming["text"] += SynthesizeChunk.from_event(event).text
        elif SynthesizeStop.is_type(event.type) and self.streaming is not None:
            request, self.streaming = self.streaming, None
            await self.speak(request["text"], request["voice"])
            await self.write_event(SynthesizeStopped().event())
        return True

    async def speak(self, text: str, voice: str | None) -> None:
        from tts_server.app import sentences

        started = False
        try:
            for part in sentences(text):
                audio = await self.state.synthesize(part, voice, None)
                if not started:
                    started = True
                    await self.write_event(AudioStart(rate=audio.sample_rate, width=2,
                                                      channels=1).event())
                await self.write_event(AudioChunk(rate=audio.sample_rate, width=2, channels=1,
                                                  audio=audio.pcm).event())
        except Exception as exc:  # BadRequest, Unavailable, SynthesisFailed: tell the client
            await self.write_event(Error(text=str(exc), code=type(exc).__name__).event())
            return
        if started:
            await self.write_event(AudioStop().event())
        log.info(f"wyoming: synthesized {len(text)} characters",
                 extra={"event": "wyoming_synthesize", "text_chars": len(text)})


async def serve(state: Any, sock: socket.socket) -> asyncio.Server:
    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await Handler(state, reader, writer).run()

    return await asyncio.start_server(client, sock=sock)
