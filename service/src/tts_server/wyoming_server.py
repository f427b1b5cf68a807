"""The Wyoming protocol (Home Assistant's voice services), beside HTTP: ``--wyoming-uri``.

``Describe`` is answered with ``Info`` listing the engine's voices; ``Synthesize`` with
``AudioStart``, one ``AudioChunk`` per sentence as it is synthesized, and ``AudioStop``;
the streaming form (``SynthesizeStart``, ``SynthesizeChunk`` ..., ``SynthesizeStop``) is
spoken sentence by sentence too and ends with ``SynthesizeStopped``. Events come from the
``wyoming`` package. The socket is bound by the main process, so every worker serves it.

Bounds, as for HTTP (`tts_server.guard`): an event's header line, its data and its
payload have size limits checked before they are read; text is limited by ``--max-text``
(a streamed request by the sum of its chunks); a connection with no event under way is
closed after ``wyoming_idle_timeout`` and the rest of an event must arrive within the
header timeout; Wyoming connections count in the worker's one connection budget with
HTTP's, the oldest idle one of either closed to make room. What is refused gets an
``error`` event, then the connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import socket
import urllib.parse
from typing import Any

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event, write_event
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
MAX_HEADER = 64 * 1024  # an event's JSON line
LINGER_S = 1.0  # after a refusal: how long what the client still sends is dropped
MAX_PAYLOAD = 64 * 1024  # a TTS server is sent no audio: payloads are never large


class Refused(Exception):
    """A client broke a bound: ``code`` and ``text`` go back in an ``error`` event."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code, self.text = code, text


class BoundedReader:
    """The `asyncio.StreamReader` the ``wyoming`` package reads events from, with each
    read bounded in size and time before a byte of it is buffered."""

    def __init__(self, reader: asyncio.StreamReader, limits: Any, max_data: int,
                 handler: Handler) -> None:
        self.reader, self.limits, self.max_data, self.handler = reader, limits, max_data, handler
        self.deadline: float | None = None  # the current event's, from its first byte

    async def readline(self) -> bytes:
        loop = asyncio.get_running_loop()
        self.handler.idle()
        try:  # the first byte of an event may take the idle timeout
            first = await asyncio.wait_for(self.reader.read(1),
                                           self.limits.wyoming_idle_timeout)
        except TimeoutError:
            raise Refused("IdleTimeout", f"no event within"
                          f" {self.limits.wyoming_idle_timeout:g}s") from None
        if not first:
            return b""
        self.deadline = loop.time() + self.limits.header_timeout
        try:
            rest = await self._timed(self.reader.readuntil(b"\n"))
        except asyncio.LimitOverrunError:
            raise Refused("HeaderTooLarge",
                          f"an event's header line is over {MAX_HEADER} bytes") from None
        except asyncio.IncompleteReadError as exc:
            rest = exc.partial
        return first + rest

    async def readexactly(self, n: int) -> bytes:
        if not isinstance(n, int) or n < 0:
            raise Refused("BadLength", "data_length and payload_length must be sizes")
        if n > self.max_data:
            raise Refused("TooLarge", f"{n} bytes; an event's data or payload may hold at most"
                                      f" {self.max_data}")
        return await self._timed(self.reader.readexactly(n))

    async def _timed(self, read: Any) -> Any:
        left = (self.deadline or 0) - asyncio.get_running_loop().time()
        try:
            return await asyncio.wait_for(read, max(0.0, left))
        except TimeoutError:
            raise Refused("Timeout", f"an event did not arrive within"
                          f" {self.limits.header_timeout:g}s of its first byte") from None


def event_bytes(event: Event) -> bytes:
    """An event as the package writes it (header line, data, payload), in one piece: for a
    write the connection's close follows."""
    buffer = io.BytesIO()
    write_event(event, buffer)
    return buffer.getvalue()


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
                 writer: asyncio.StreamWriter, limits: Any = None, budget: Any = None) -> None:
        from tts_server.guard import Budget, Limits

        self.limits = limits or Limits()
        self.budget = budget or Budget(self.limits.max_connections)
        # a text of max_text characters, each up to 4 bytes of UTF-8 escaped in JSON
        max_data = max(MAX_PAYLOAD, 12 * state.max_text + 4096)
        super().__init__(BoundedReader(reader, self.limits, max_data, self),  # type: ignore
                         writer)
        self.state = state
        self.streaming: dict[str, Any] | None = None  # voice and text parts of a stream
        self.streamed = 0  # characters of the streamed request so far

    # --- the connection budget ---

    def idle(self) -> None:
        self.budget.wait(self)

    def evict(self) -> None:
        self.budget.busy(self)
        self.writer.close()

    async def run(self) -> None:
        """`AsyncEventHandler.run`, with what a bound refuses answered before closing."""
        from wyoming.event import async_read_event

        try:
            while True:
                event = await async_read_event(self.reader)  # type: ignore[arg-type]
                if event is None or not await self.handle_event(event):
                    break
        except Refused as exc:
            await self._refuse(exc.code, exc.text)
        except (ConnectionError, OSError):
            pass  # the client went away (or was evicted for room)
        except Exception as exc:  # an event the package could not take (a length of "x")
            await self._refuse("BadEvent", f"not a Wyoming event ({type(exc).__name__})")
        finally:
            self.budget.leave(self)
            self.writer.close()

    async def _refuse(self, code: str, text: str) -> None:
        """Answer an ``error`` event, then close without losing it: the event in one write
        (the package writes its header and its data apart), the end of our output, and
        what the client still sends read and dropped for up to ``LINGER_S``. A close with
        its bytes unread would make the kernel reset the connection, and a client that
        was still sending (a refused 400 MB body) could miss the answer."""
        with contextlib.suppress(Exception):
            self.writer.write(event_bytes(Error(text=text, code=code).event()))
            await self.writer.drain()
            self.writer.write_eof()
            reader = self.reader.reader  # type: ignore[attr-defined]  # the bounded one's
            async with asyncio.timeout(LINGER_S):
                while await reader.read(1 << 16):
                    pass
        log.info(f"wyoming: refused ({code}): {text}",
                 extra={"event": "wyoming_refused", "code": code})

    async def handle_event(self, event: Event) -> bool:
        self.budget.busy(self)  # an event under way: not closed to make room
        if Describe.is_type(event.type):
            await self.write_event(info(self.state).event())
        elif Synthesize.is_type(event.type):
            if self.streaming is None:  # the one-shot form (streaming clients send both)
                request = Synthesize.from_event(event)
                await self.speak(request.text, request.voice.name if request.voice else None)
        elif SynthesizeStart.is_type(event.type):
            start = SynthesizeStart.from_event(event)
            self.streaming = {"voice": start.voice.name if start.voice else None, "parts": []}
            self.streamed = 0
        elif SynthesizeChunk.is_type(event.type) and self.streaming is not None:
            text = SynthesizeChunk.from_event(event).text
            self.streamed += len(text)
            if self.streamed > self.state.max_text:
                self.streaming = None
                raise Refused("TextTooLong", f"the streamed text is over {self.state.max_text}"
                                             " characters (--max-text)")
            self.streaming["parts"].append(text)  # joined once: += would be quadratic
        elif SynthesizeStop.is_type(event.type) and self.streaming is not None:
            request, self.streaming = self.streaming, None
            await self.speak("".join(request["parts"]), request["voice"])
            await self.write_event(SynthesizeStopped().event())
        return True

    async def speak(self, text: str, voice: str | None) -> None:
        from tts_server.app import sentences

        if not isinstance(text, str) or len(text) > self.state.max_text:
            raise Refused("TextTooLong", f"text is {len(text)} characters; the limit is"
                                         f" {self.state.max_text} (--max-text)")
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


async def serve(state: Any, sock: socket.socket, limits: Any = None,
                budget: Any = None) -> asyncio.Server:
    """Serve Wyoming on ``sock`` within ``budget``, the connection budget shared with HTTP.

    A connection is admitted (or refused, or an idle one evicted for it) the moment it is
    accepted, in the protocol's ``connection_made``, as HTTP's are: waiting for the
    handler's task would let a flood hold descriptors before any is counted.
    """
    from tts_server.guard import ACCEPT_BATCH, Budget, Limits

    limits = limits or Limits()
    budget = budget or Budget(limits.max_connections)
    loop = asyncio.get_running_loop()
    busy = event_bytes(Error(text="too many connections; retry shortly", code="Busy").event())

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await Handler(state, reader, writer, limits, budget).run()

    class Admitting(asyncio.StreamReaderProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            if budget.admit() == "busy":
                transport.write(busy)  # type: ignore[attr-defined]
                transport.close()
                return  # no handler: the connection ends here
            super().connection_made(transport)

    def factory() -> asyncio.StreamReaderProtocol:
        return Admitting(asyncio.StreamReader(limit=MAX_HEADER, loop=loop), client, loop=loop)

    # a small accept batch, as for HTTP: a flood is admitted (or refused) a batch at a time
    return await loop.create_server(factory, sock=sock, backlog=ACCEPT_BATCH)
