"""The reference TTS server: latency against the espeak-ng CLI, throughput, idle RSS."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import httpx
import psutil

from bench.common import Result, percentile

TEXT = ("The quick brown fox jumps over the lazy dog while the text to speech service "
        "reads this aloud today.")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "tts_server", "--engine", "espeak", "--port",
                             str(port), "--log-level", "WARNING", "--max-queue", "64"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready").status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("tts-server did not become ready")


def server(quick: bool) -> list[Result]:
    assert len(TEXT) == 100
    n = 30 if quick else 100
    port = _free_port()
    proc = _start(port)
    url = f"http://127.0.0.1:{port}/synthesize"
    results = []
    try:
        time.sleep(0.5)
        idle_rss = psutil.Process(proc.pid).memory_info().rss
        with httpx.Client() as client:
            for _ in range(5):
                client.post(url, json={"text": TEXT})
            lat = []
            for _ in range(n):
                t = time.perf_counter()
                r = client.post(url, json={"text": TEXT})
                lat.append(time.perf_counter() - t)
                assert r.status_code == 200
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "out.wav")
            cli = []
            for _ in range(n):
                t = time.perf_counter()
                subprocess.run(["espeak-ng", "-w", out, TEXT], check=True)
                cli.append(time.perf_counter() - t)
        server_ms, cli_ms = statistics.median(lat) * 1000, statistics.median(cli) * 1000
        r = Result("tts-server: 100-char synthesis, median latency", server_ms, "ms", cli_ms,
                   "espeak-ng -w out.wav (CLI)", "ratio <= 1.3")
        r.ok = r.ratio <= 1.3
        results.append(r)

        duration = 3.0 if quick else 8.0
        samples: list[float] = []
        errors = [0]
        stop = time.monotonic() + duration

        def client_loop() -> None:
            with httpx.Client() as c:
                while time.monotonic() < stop:
                    t = time.perf_counter()
                    resp = c.post(url, json={"text": TEXT}, timeout=30)
                    samples.append(time.perf_counter() - t)
                    if resp.status_code != 200:
                        errors[0] += 1

        threads = [threading.Thread(target=client_loop) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rps = len(samples) / duration
        single_rps = 1 / statistics.median(lat)
        results.append(Result(
            "tts-server: throughput, 8 concurrent clients", rps, "req/s", single_rps,
            "1 client, sequential", "reported",
            note=(f"p50 {percentile(samples, 50) * 1000:.1f} ms, p95"
                  f" {percentile(samples, 95) * 1000:.1f} ms, p99"
                  f" {percentile(samples, 99) * 1000:.1f} ms, {errors[0]} non-200")))
        results.append(Result("tts-server: idle RSS", idle_rss / 2**20, "MiB", None, "",
                              "reported"))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return results
