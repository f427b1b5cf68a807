"""Wyoming against hostile clients: every size and time bound of HTTP applies, what is
refused gets an ``error`` event, and Wyoming connections share HTTP's connection budget
(the real server process, the official ``wyoming`` client where one can speak)."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx
import pytest

from tts_ops.testing import free_port


def wyoming_server(start_server, *args: str, **popen):
    port = free_port()
    server = start_server("--wyoming-uri", f"tcp://127.0.0.1:{port}", "--workers", "1", *args,
                          **popen)
    server.wyoming_port = port
    return server


def read_events(sock: socket.socket) -> list[dict]:
    """The event header lines the server sends until it closes the connection."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    events = []
    while b"\n" in data:  # a header line, then data_length bytes of data, then the payload
        line, data = data.split(b"\n", 1)
        event = json.loads(line)
        length = event.get("data_length") or 0
        if length:
            event["data"] = {**event.get("data", {}), **json.loads(data[:length])}
        data = data[length + (event.get("payload_length") or 0):]
        events.append(event)
    return events


def error_of(events: list[dict]) -> dict:
    [error] = [e for e in events if e.get("type") == "error"]
    return error.get("data") or {}


def peak_rss_mb(server) -> float:
    for line in open(f"/proc/{server.proc.pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_huge_data_length_is_refused_before_it_is_read(start_server):
    server = wyoming_server(start_server)
    before = peak_rss_mb(server)
    with socket.create_connection(("127.0.0.1", server.wyoming_port), timeout=20) as sock:
        sock.sendall(json.dumps({"type": "synthesize", "data_length": 400_000_000}).encode()
                     + b"\n")
        try:
            for _ in range(300):  # 300 MB: dropped unread for a second after the refusal
                sock.sendall(b"x" * 1024 * 1024)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused and closed before we were done: the answer came first
        events = read_events(sock)
    error = error_of(events)
    assert error["code"] == "TooLarge" and "400000000 bytes" in error["text"]
    assert peak_rss_mb(server) < before + 40, (before, peak_rss_mb(server))


def _text_too_long(port: int, events: list) -> dict:
    async def talk() -> dict:
        from wyoming.client import AsyncTcpClient
        from wyoming.error import Error

        async with AsyncTcpClient("127.0.0.1", port) as wy:
            for event in events:
                await wy.write_event(event)
            answer = await wy.read_event()
            assert Error.is_type(answer.type), answer
            error = Error.from_event(answer)
            return {"code": error.code, "text": error.text}

    return asyncio.run(talk())


def test_text_over_max_text_is_an_error_event(start_server):
    from wyoming.tts import Synthesize

    server = wyoming_server(start_server, "--max-text", "5000")
    error = _text_too_long(server.wyoming_port, [Synthesize(text="a" * 6000).event()])
    assert error["code"] == "TextTooLong" and "limit is 5000" in error["text"]
    # the report's 260,000 characters: refused by the data bound before it is read
    error = _text_too_long(server.wyoming_port, [Synthesize(text="a" * 260_000).event()])
    assert error["code"] == "TooLarge"


def test_a_stream_of_chunks_is_bounded_by_max_text_in_sum(start_server):
    from wyoming.tts import SynthesizeChunk, SynthesizeStart

    server = wyoming_server(start_server, "--max-text", "1000")
    chunks = [SynthesizeChunk(text="word " * 60).event() for _ in range(4)]  # 1,200 in all
    error = _text_too_long(server.wyoming_port, [SynthesizeStart().event(), *chunks])
    assert error["code"] == "TextTooLong" and "over 1000 characters" in error["text"]
    assert httpx.get(f"{server.url}/health").status_code == 200


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["idle", "half an event"])
def test_an_idle_or_slow_connection_is_closed_with_an_error(start_server, kind):
    server = wyoming_server(start_server, "--wyoming-idle-timeout", "1", "--header-timeout", "1")
    with socket.create_connection(("127.0.0.1", server.wyoming_port), timeout=20) as sock:
        if kind == "half an event":
            sock.sendall(b'{"type": "describe"')
        started = time.monotonic()
        events = read_events(sock)
        waited = time.monotonic() - started
    error = error_of(events)
    assert error["code"] == ("IdleTimeout" if kind == "idle" else "Timeout"), error
    assert waited < 10  # closed at its timeout, not by the socket's own 20 s


def test_an_oversized_header_line_is_refused(start_server):
    server = wyoming_server(start_server)
    with socket.create_connection(("127.0.0.1", server.wyoming_port), timeout=20) as sock:
        sock.sendall(b'{"type": "synthesize", "data": {"text": "' + b"a" * 200_000)
        events = read_events(sock)
    assert error_of(events)["code"] == "HeaderTooLarge"


@pytest.mark.slow
def test_3000_idle_wyoming_connections_under_1024_descriptors_leave_health_answering(
        start_server):
    """The connection budget is shared with HTTP: past it the oldest idle Wyoming
    connections are closed for new ones, so descriptors never run out, /health still
    answers within 2 s and Wyoming itself still answers."""
    port = free_port()
    wport = free_port()
    import sys

    server = start_server("--wyoming-uri", f"tcp://127.0.0.1:{wport}", "--workers", "1",
                          port=port, cmd=["prlimit", "--nofile=1024:1024", sys.executable, "-m",
                                          "tts_server", "--port", str(port), "--engine", "espeak",
                                          "--wyoming-uri", f"tcp://127.0.0.1:{wport}",
                                          "--workers", "1"])
    held = []
    try:
        for _ in range(3000):
            sock = socket.socket()
            sock.settimeout(20)
            try:
                sock.connect(("127.0.0.1", wport))
            except OSError:
                sock.close()
                continue
            held.append(sock)
        started = time.monotonic()
        assert httpx.get(f"{server.url}/health", timeout=2).status_code == 200
        assert time.monotonic() - started < 2
        from wyoming.info import Describe

        async def describe() -> str:
            from wyoming.client import AsyncTcpClient

            async with AsyncTcpClient("127.0.0.1", wport) as wy:
                await wy.write_event(Describe().event())
                # behind the flood in the accept queue: each admission evicts an idle one
                return (await asyncio.wait_for(wy.read_event(), 30)).type

        assert asyncio.run(describe()) == "info"
        assert server.proc.poll() is None
        assert "Too many open files" not in server.log_path.read_text()
    finally:
        for sock in held:
            sock.close()
