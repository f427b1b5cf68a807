"""tts-server against hostile clients: huge and stalled bodies, slow headers, floods, odd JSON.

Every client here is a raw socket, so the test controls each byte and each pause; the
server is the real process. Timeouts are set short by flag so that "dropped within its
timeout" is checked in seconds.
"""

from __future__ import annotations

import resource
import socket
import time

import httpx
import pytest

from tts_ops.testing import wait_for

MB = 1024 * 1024


def connect(server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    return sock


def read_response(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0


def peak_rss_mb(server) -> float:
    for line in open(f"/proc/{server.proc.pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def head(length: int | None = None, chunked: bool = False) -> bytes:
    lines = ["POST /synthesize HTTP/1.1", "Host: x", "Content-Type: application/json"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_an_oversized_content_length_is_413_before_the_body_is_read(start_server):
    server = start_server()
    with connect(server) as sock:
        sock.sendall(head(100_000_000))  # and never a byte of the promised body
        response = read_response(sock)
    assert status_of(response) == 413
    assert b"connection: close" in response.lower()
    assert b'"error": "the body is 100000000 bytes; the limit is 1048576"' in response


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_50_mb_body_keeps_peak_rss_under_120_mb(start_server, chunked):
    server = start_server()
    before = peak_rss_mb(server)
    block = b"[" * MB
    with connect(server) as sock:
        sock.sendall(head(None if chunked else 50 * MB, chunked=chunked))
        sent = 0
        try:
            for _ in range(50):
                sock.sendall(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
                sent += 1
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: it stopped reading, as it should
        response = read_response(sock)
    assert status_of(response) == 413, response[:200]
    assert sent < 50  # cut off long before the end
    assert peak_rss_mb(server) < 120, (before, peak_rss_mb(server))
    assert httpx.get(f"{server.url}/health").status_code == 200


@pytest.mark.slow
def test_a_stalled_body_is_dropped_within_its_timeout(start_server):
    server = start_server("--body-timeout", "1")
    with connect(server) as sock:
        sock.sendall(head(100) + b'{"text": "hel')
        started = time.monotonic()
        response = read_response(sock)
        waited = time.monotonic() - started
    assert status_of(response) == 408
    assert b"did not arrive within 1s" in response
    assert waited < 10  # dropped at the timeout, not held by the socket's own 20 s


@pytest.mark.slow
def test_slow_headers_are_dropped_within_their_timeout(start_server):
    server = start_server("--header-timeout", "1")
    with connect(server) as idle, connect(server) as partial:
        partial.sendall(b"POST /synthesize HTTP/1.1\r\nHost: x\r\n")
        for sock in (idle, partial):
            started = time.monotonic()
            response = read_response(sock)
            assert status_of(response) == 408, response
            assert time.monotonic() - started < 10
    # after a response, a keep-alive connection that starts a request must finish it too
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    conn.request("GET", "/health")
    first = conn.getresponse()
    assert first.status == 200 and first.read()
    conn.sock.sendall(b"GET /health HTTP/1.1\r\n")
    assert status_of(read_response(conn.sock)) == 408
    conn.close()


def test_a_slow_header_flood_never_starves_health_checks(start_server):
    # a descriptor limit of 256 and 600 sockets that never finish their headers: the
    # oldest are closed to make room, /health keeps answering and nothing floods the log
    server = start_server("--max-connections", "1000", "--header-timeout", "30", "--workers", "1",
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE,
                                                                (256, 256)))
    flood = []
    try:
        for _ in range(600):
            sock = connect(server)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            flood.append(sock)
        for _ in range(5):
            assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'tts_connections_closed_total{reason="evicted"}' in metrics
    finally:
        for sock in flood:
            sock.close()
    log = server.log_path.read_text().splitlines()
    assert len(log) < 100, log[-5:]
    assert all(line.startswith("{") for line in log)


def test_past_the_limit_with_every_connection_busy_new_ones_get_503(start_server):
    # the cap is each worker's (each process holds its own connections): one worker here
    server = start_server("--max-connections", "10", "--workers", "1")
    busy = []
    try:
        for _ in range(10):  # headers complete, body pending: a request in progress
            sock = connect(server)
            sock.sendall(head(100))
            busy.append(sock)
        # until the server has taken in all ten, an eleventh is still served
        response = wait_for(lambda: _busy(server), message="a 503 past the limit")
        assert response.json()["error"] == "too many connections; retry shortly"
    finally:
        for sock in busy:
            sock.close()
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200


def _busy(server):
    response = httpx.get(f"{server.url}/health", timeout=10)
    return response if response.status_code == 503 else None


@pytest.mark.parametrize(("raw", "field", "message"), [
    (b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "body", "nested too deeply"),
    (b'{"text": "hi\\ud800"}', "text", "lone surrogate"),
    (b'{"text": "hi\\u0000 there"}', "text", "must not contain NUL"),
    (b'{"text": "hi", "voice": "en\\u0000"}', "voice", "must not contain NUL"),
])
def test_odd_json_is_a_400_naming_the_field(start_server, raw, field, message):
    server = start_server()
    resp = httpx.post(f"{server.url}/synthesize", content=raw,
                      headers={"content-type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert resp.json()["field"] == field and message in resp.json()["error"]


def test_framework_errors_are_json_too(start_server):
    server = start_server()
    missing = httpx.get(f"{server.url}/nope")
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}
    wrong = httpx.get(f"{server.url}/synthesize")
    assert wrong.status_code == 405 and wrong.json() == {"error": "Method Not Allowed"}


def test_bad_limits_are_one_line_exit_2():
    import subprocess
    import sys

    for flag, value in (("--body-timeout", "nan"), ("--max-body-bytes", "0"),
                        ("--header-timeout", "-1"), ("--max-connections", "0")):
        out = subprocess.run([sys.executable, "-m", "tts_server", flag, value],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 2, (flag, out.stderr)
        assert f"{flag} must be" in out.stderr and "Traceback" not in out.stderr
