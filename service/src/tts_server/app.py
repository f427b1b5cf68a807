"""The HTTP application: /synthesize, /health, /ready, /voices, /metrics, and OpenAI's
/v1/audio/speech and /v1/models (`tts_server.openai_api`)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tts_server import __version__
from tts_server.audio import encode_wav
from tts_server.engines.base import BadRequest, Engine
from tts_server.guard import BodyGuard, Limits
from tts_server.metrics import Metrics
from tts_server.metrics import render as render_metrics

log = logging.getLogger("tts_server")
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n+")


@dataclass
class ServerState:
    engine: Engine
    engine_note: str
    max_text: int = 5000
    max_queue: int = 32
    ready: bool = False
    started: float = field(default_factory=time.monotonic)
    waiting: int = 0
    metrics: Metrics = field(default_factory=Metrics)
    lock: asyncio.Lock | None = None
    voice_map: dict[str, str] = field(default_factory=dict)  # OpenAI voice name -> ours
    cache: Any = None  # `tts_server.cache.AudioCache`, None when --cache-bytes 0

    async def synthesize(self, text: str, voice: str | None, rate: int | None) -> Any:
        """One synthesis in a worker thread, counted against the queue; raises `Unavailable`
        (503), `BadRequest` (400) or `SynthesisFailed` (500)."""
        if not self.ready:
            raise Unavailable("the engine is warming up")
        if self.waiting >= self.max_queue:
            self.metrics.rejected.inc()
            raise Unavailable("too many requests queued")
        self.waiting += 1
        self.metrics.in_flight.inc()
        started = time.perf_counter()
        try:
            audio = await asyncio.to_thread(self.engine.synthesize, text, voice, rate)
        except BadRequest:
            raise
        except Exception as exc:
            self.metrics.errors.labels("synthesis").inc()
            log.exception("synthesis failed", extra={"event": "error"})
            raise SynthesisFailed(f"synthesis failed: {type(exc).__name__}") from None
        finally:
            self.waiting -= 1
            self.metrics.in_flight.dec()
        self.metrics.synthesis.observe(time.perf_counter() - started)
        if audio.session is not None:
            self.metrics.sessions.labels(audio.session).inc()
        return audio

    def info(self) -> dict[str, Any]:
        return {
            "engine": self.engine.name,
            "engine_detail": getattr(self.engine, "description", self.engine.name),
            "engine_choice": self.engine_note,
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started, 3),
            "pid": os.getpid(),
            "release": os.environ.get("TTS_OPS_RELEASE"),  # set by a tts-ops deploy
            **({"threads": self.engine.choice()} if hasattr(self.engine, "choice") else {}),
            "cache": ({"max_bytes": self.cache.max_bytes} if self.cache is not None
                      else None),
        }

    async def cached(self, key_parts: tuple, make: Any) -> tuple[bytes, str | None]:
        """(the answer's bytes, its ETag): from the cache or an identical request's
        synthesis when there is one, else ``await make()`` (and stored). Without a cache,
        ``make()`` and no ETag."""
        if self.cache is None:
            return await make(), None
        from tts_server.cache import key_of

        key = key_of(self.engine.name, *key_parts)
        data, _shared = await self.cache.get_or_make(key, make)
        return data, f'"{key[:40]}"'

    def cache_get(self, key_parts: tuple) -> tuple[bytes, str] | None:
        """A stored answer and its ETag, or None (no cache, or not stored)."""
        if self.cache is None:
            return None
        from tts_server.cache import key_of

        key = key_of(self.engine.name, *key_parts)
        data = self.cache.get(key)
        self.cache.count(hit=data is not None)
        return None if data is None else (data, f'"{key[:40]}"')

    def cache_keeper(self, key_parts: tuple) -> Any:
        """What stores a streamed answer once complete (None without a cache)."""
        if self.cache is None:
            return None
        from tts_server.cache import key_of

        key = key_of(self.engine.name, *key_parts)
        return lambda data: self.cache.put(key, data)

    def fingerprint(self, voice: str | None) -> str:
        """The engine's identity of ``voice`` (a model's digest) for the cache's key."""
        fingerprint = getattr(self.engine, "fingerprint", None)
        return fingerprint(voice) if fingerprint else f"{self.engine.name} {voice}"


class Unavailable(Exception):
    """Not now: warming up or the queue is full (503, Retry-After: 1)."""


class SynthesisFailed(Exception):
    """The engine failed (500)."""


def _error(status: int, message: str, field: str | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if field:
        body["field"] = field
    body.update(extra)
    return JSONResponse(body, status_code=status)


def _bad_text(value: Any) -> str | None:
    """Why a string cannot be spoken (a NUL would cut it short in the engine), or None."""
    if not isinstance(value, str):
        return None
    if "\0" in value:
        return "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (it holds a lone surrogate)"
    return None


async def _http_error(_request: Request, exc: Exception) -> Response:
    """Framework errors (404, 405, 408, 413 from the guard) in the same JSON shape."""
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code,
                        headers=exc.headers)


def create_app(state: ServerState, limits: Limits | None = None,
               cors_origins: tuple[str, ...] = ()) -> Any:
    async def health(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", **state.info()})

    async def ready(_request: Request) -> JSONResponse:
        if not state.ready:
            return JSONResponse({"status": "warming", **state.info()}, status_code=503)
        return JSONResponse({"status": "ready", **state.info()})

    async def voices(_request: Request) -> JSONResponse:
        return JSONResponse({"engine": state.engine.name,
                             "voices": [v.__dict__ for v in state.engine.voices()]})

    async def metrics(request: Request) -> Response:
        names = request.query_params.getlist("name[]")  # as prometheus_client's own servers
        return Response(render_metrics(state.metrics.registry, names),
                        media_type=CONTENT_TYPE_LATEST)

    from tts_server.openai_api import routes as openai_routes

    app = Starlette(routes=[
        Route("/synthesize", synthesize_route(state), methods=["POST"]),
        Route("/health", health),
        Route("/ready", ready),
        Route("/voices", voices),
        Route("/metrics", metrics),
        *openai_routes(state),
    ], exception_handlers={HTTPException: _http_error})
    inner: Any = app
    if cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        inner = CORSMiddleware(app, allow_origins=list(cors_origins),
                               allow_methods=["GET", "POST"], allow_headers=["*"])
    return _AccessLog(BodyGuard(inner, limits or Limits()), state)



@dataclass
class SpeechRequest:
    """A valid ``POST /synthesize`` body."""

    text: str
    voice: str | None
    rate: int | None
    stream: bool


def speech_request(ctype: str, raw: bytes, max_text: int) -> SpeechRequest | JSONResponse:
    """The request, or the error answer naming the field and the fix."""
    if ctype != "application/json":
        return _error(415, "Content-Type must be application/json", "content-type")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return _error(400, f"malformed JSON: {exc}", "body")
    except RecursionError:
        return _error(400, "malformed JSON: nested too deeply", "body")
    if not isinstance(body, dict):
        return _error(400, "the body must be a JSON object", "body")
    unknown = set(body) - {"text", "voice", "rate", "stream"}
    if unknown:
        return _error(400, f"unknown field {sorted(unknown)[0]!r}: use text, voice, rate,"
                           " stream",
                      sorted(unknown)[0])
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        return _error(400, "text is required: a non-empty string", "text")
    for name in ("text", "voice"):
        problem = _bad_text(body.get(name))
        if problem:
            return _error(400, f"{name} {problem}", name)
    if len(text) > max_text:
        return _error(413, f"text is {len(text)} characters; the limit is {max_text}", "text")
    voice = body.get("voice")
    if voice is not None and not isinstance(voice, str):
        return _error(400, "voice must be a string", "voice")
    rate = body.get("rate")
    if rate is not None and (not isinstance(rate, int) or isinstance(rate, bool)):
        return _error(400, "rate must be an integer (words per minute)", "rate")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        return _error(400, "stream must be true or false", "stream")
    return SpeechRequest(text, voice, rate, stream)


def synthesize_route(state: ServerState) -> Any:
    """``POST /synthesize``: a WAV, from the cache or one synthesis shared by identical
    requests; with ``stream``, sentence by sentence."""
    async def synthesize(request: Request) -> Response:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        asked = speech_request(ctype, await request.body(), state.max_text)
        if isinstance(asked, JSONResponse):
            return asked
        text, voice, rate, stream = asked.text, asked.voice, asked.rate, asked.stream
        started = time.perf_counter()
        parts = sentences(text) if stream else [text]

        async def whole() -> bytes:
            audio = await state.synthesize(text, voice, rate)
            return encode_wav(audio.pcm, audio.sample_rate)

        try:
            fingerprint = state.fingerprint(voice)
            if not stream:
                body, etag = await state.cached(("wav", fingerprint, text, rate), whole)
            else:
                found = state.cache_get(("wav-stream", fingerprint, text, rate))
                if found is None:
                    audio = await state.synthesize(parts[0], voice, rate)
        except Unavailable as exc:
            return JSONResponse({"error": str(exc)}, status_code=503,
                                headers={"Retry-After": "1"})
        except BadRequest as exc:
            return _error(400, str(exc), exc.field, **exc.extra)
        except SynthesisFailed as exc:
            return _error(500, str(exc))
        request.scope["tts_log"] = {"text_chars": len(text),
                                    "synth_ms": round((time.perf_counter() - started) * 1000, 2)}
        if stream:  # sentence by sentence, a WAV of unknown length; cached once complete
            if found is not None:
                return _cached_answer(request, *found, "audio/wav")
            keep = state.cache_keeper(("wav-stream", fingerprint, text, rate))
            return StreamingResponse(stream_speech(state, audio, parts[1:], voice, rate, "wav",
                                                   keep), media_type="audio/wav")
        return _cached_answer(request, body, etag, "audio/wav")

    return synthesize


def sentences(text: str) -> list[str]:
    """The text in sentences (after . ! ? ; : and line breaks), for sentence-by-sentence
    synthesis; never empty."""
    parts = [p.strip() for p in _SENTENCE_END.split(text)]
    return [p for p in parts if p] or [text]


def _cached_answer(request: Request, body: bytes, etag: str | None, media_type: str
                   ) -> Response:
    """The answer, with its ETag when it is cacheable (304 when the client has it)."""
    if etag is None:
        return Response(body, media_type=media_type)
    headers = {"ETag": etag}
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


async def stream_speech(state: ServerState, first: Any, rest: list[str], voice: str | None,
                        rate: int | None, fmt: str, keep: Any = None) -> Any:
    """Encode ``first`` (already synthesized), then synthesize and send each sentence of
    ``rest``; a client that leaves stops it before the next sentence. ``keep(bytes)``
    stores the whole answer once every sentence was sent (never a stream cut short)."""
    from tts_server.encode import StreamEncoder

    encoder = StreamEncoder(fmt, first.sample_rate)
    done = 0
    sent: list[bytes] = []
    try:
        chunk = encoder.feed(first.pcm)
        if chunk:
            sent.append(chunk)
            yield chunk
        for part in rest:
            audio = await state.synthesize(part, voice, rate)
            done += 1
            chunk = encoder.feed(audio.pcm)
            if chunk:
                sent.append(chunk)
                yield chunk
        last = encoder.close()
        sent.append(last)
        yield last
        if keep is not None:
            keep(b"".join(sent))
    except (Unavailable, SynthesisFailed, BadRequest) as exc:
        # the status line is gone: end the stream early, and say so in the log
        log.warning(f"stream ended early: {exc}", extra={"event": "stream_failed"})
    finally:
        if done < len(rest):
            log.info(f"stream stopped after {done + 1} of {len(rest) + 1} sentences",
                     extra={"event": "stream_stopped", "sentences": len(rest) + 1,
                            "sent": done + 1})


class _AccessLog:
    """ASGI wrapper: counts every response by status and logs one JSON line per request."""

    def __init__(self, app: Any, state: ServerState) -> None:
        self.app = app
        self.state = state
        #: which process served a request, for anyone behind a router or a shared socket
        instance = os.environ.get("TTS_OPS_INSTANCE")
        node = os.environ.get("TTS_OPS_NODE")
        if instance and node and ":" not in instance and node.isprintable() and len(node) < 64:
            instance = f"{instance}:{node}"  # the record id a shared registry knows it by
        self.identity = [(b"x-tts-" + key.encode(), value.encode("latin-1", "replace"))
                         for key, value in (("instance", instance),
                                            ("release", os.environ.get("TTS_OPS_RELEASE")))
                         if value]

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def capture(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                if self.identity:
                    message = {**message, "headers": [*message.get("headers", []),
                                                      *self.identity]}
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            code = status["code"]
            path = scope.get("path", "")
            label = path if path in ("/synthesize", "/health", "/ready", "/voices", "/metrics",
                                     "/v1/audio/speech", "/v1/models") \
                else "other"
            self.state.metrics.requests.labels(label, str(code)).inc()
            if code >= 500:
                self.state.metrics.errors.labels("http_5xx").inc()
            if label not in ("/health", "/ready", "/metrics"):
                extra = {"event": "request", "method": scope.get("method"), "path": path,
                         "status": code, "ms": round((time.perf_counter() - started) * 1000, 2),
                         **scope.get("tts_log", {})}
                level = logging.WARNING if code >= 500 else logging.INFO
                log.log(level, f"{scope.get('method')} {path} {code}", extra=extra)
