"""OpenAI's speech API, as the official SDK calls it: ``POST /v1/audio/speech`` and
``GET /v1/models``.

``model``: any of `MODELS` (OpenAI's names, and the engine's own); ``voice``: a voice the
engine lists, or one of OpenAI's names, each mapped to ``--voice-map NAME=VOICE`` or else
the engine's default voice; ``response_format``: mp3 (default), opus, aac, flac, wav, pcm;
``speed``: 0.25-4.0, turned into the engine's speaking rate (175 words per minute times
``speed``, held to the engine's 80-450). The audio is always streamed sentence by sentence
(chunked), so ``with_streaming_response`` gets the first sentence while the rest is being
synthesized; ``stream_format: sse`` is refused. Errors have OpenAI's shape:
``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from tts_server.encode import FORMATS

MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage",
                 "shimmer", "verse")
BASE_RATE = 175  # words per minute at speed 1.0
RATE_RANGE = (80, 450)


def error(status: int, message: str, param: str | None = None,
          kind: str = "invalid_request_error", code: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param,
                                   "code": code}}, status_code=status)


def routes(state: Any) -> list[Route]:
    models = (*MODELS, state.engine.name)

    async def list_models(_request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "tts-server"}
            for m in models]})

    async def speech(request: Request) -> Any:
        from tts_server.app import (
            SynthesisFailed,
            Unavailable,
            _cached_answer,
            sentences,
            stream_speech,
        )
        from tts_server.engines.base import BadRequest

        asked = _asked(await request.body(), state, models)
        if isinstance(asked, JSONResponse):
            return asked
        text, ours, fmt, speed = asked
        rate = min(RATE_RANGE[1], max(RATE_RANGE[0], round(BASE_RATE * speed)))
        parts = sentences(text)
        started = time.perf_counter()
        try:
            key = ("openai", fmt, state.fingerprint(ours), text, rate)
            found = state.cache_get(key)
            if found is not None:  # the whole answer, stored when it was first streamed
                return _cached_answer(request, *found, FORMATS[fmt].media_type)
            first = await state.synthesize(parts[0], ours, rate)
        except Unavailable as exc:
            response = error(503, str(exc), kind="server_error", code="overloaded")
            response.headers["Retry-After"] = "1"
            return response
        except BadRequest as exc:
            return error(400, str(exc), "voice" if exc.field == "voice" else exc.field)
        except SynthesisFailed as exc:
            return error(500, str(exc), kind="server_error")
        request.scope["tts_log"] = {"text_chars": len(text), "format": fmt,
                                    "synth_ms": round((time.perf_counter() - started) * 1000,
                                                      2)}
        return StreamingResponse(stream_speech(state, first, parts[1:], ours, rate, fmt,
                                               state.cache_keeper(key)),
                                 media_type=FORMATS[fmt].media_type)

    return [Route("/v1/audio/speech", speech, methods=["POST"]),
            Route("/v1/models", list_models, methods=["GET"])]


def _asked(raw: bytes, state: Any, models: tuple[str, ...]
           ) -> tuple[str, str | None, str, float] | JSONResponse:
    """The request's (input, the engine's voice, response_format, speed), or the error
    that names the field to fix."""
    from tts_server.app import _bad_text

    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return error(400, f"malformed JSON body: {exc}")
    if not isinstance(body, dict):
        return error(400, "the body must be a JSON object")
    model = body.get("model")
    if model not in models:
        return error(400, f"model must be one of {', '.join(models)} (got {model!r})",
                     "model", code="model_not_found")
    text = body.get("input")
    if not isinstance(text, str) or not text.strip():
        return error(400, "input is required: a non-empty string", "input")
    if _bad_text(text):
        return error(400, f"input {_bad_text(text)}", "input")
    if len(text) > state.max_text:
        return error(400, f"input is {len(text)} characters; the limit is"
                          f" {state.max_text}", "input")
    voice = body.get("voice")
    if isinstance(voice, dict):  # the SDK's {"id": ...} form for custom voices
        voice = voice.get("id")
    known = {v.name for v in state.engine.voices()}
    if not isinstance(voice, str) or (voice not in known and voice not in OPENAI_VOICES):
        return error(400, f"voice must be one of OpenAI's ({', '.join(OPENAI_VOICES)}) or"
                          f" a voice from /voices (got {voice!r})", "voice")
    ours = voice if voice in known else state.voice_map.get(voice)
    fmt = body.get("response_format", "mp3")
    if fmt not in FORMATS:
        return error(400, f"response_format must be one of {', '.join(FORMATS)}"
                          f" (got {fmt!r})", "response_format")
    speed = body.get("speed", 1.0)
    if isinstance(speed, bool) or not isinstance(speed, int | float) or \
            not math.isfinite(speed) or not 0.25 <= speed <= 4.0:
        return error(400, f"speed must be a number from 0.25 to 4.0 (got {speed!r})",
                     "speed")
    if body.get("stream_format", "audio") != "audio":
        return error(400, "stream_format must be audio (server-sent events are not"
                          " supported)", "stream_format")
    return text, ours, fmt, speed
