"""Logs: ``logs stats`` throughput and RSS against ``wc -l`` over the same (generated) files,
and the time from crossing an alert threshold to the alert, while 10,000 lines/s are written."""

from __future__ import annotations

import json
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from bench.common import Result, clean_env, tts_ops

LINE = ('{{"ts": "2026-11-26T{h:02d}:{m:02d}:{s:02d}.{ms:03d}Z", "level": "{lvl}", "logger": '
        '"tts_server", "msg": "POST /synthesize 200", "event": "request", "method": "POST", '
        '"path": "/synthesize", "status": 200, "ms": 3.1, "text_chars": 42, "synth_ms": {lat}}}\n')


def _generate(directory: Path, total: int) -> list[Path]:
    live = directory / "big.log"
    files = []
    per_file = 64 * 2**20
    written = 0
    n = 0
    index = 0
    while written < total:
        path = live if written + per_file >= total else directory / \
            f"big.log.20261126T{index:06d}.000000000"
        chunk = []
        size = 0
        while size < per_file and written + size < total:
            t = n // 50
            row = LINE.format(h=t // 3600 % 24, m=t // 60 % 60, s=t % 60, ms=n % 1000,
                              lvl="ERROR" if n % 997 == 0 else "INFO", lat=1 + n % 200)
            chunk.append(row)
            size += len(row)
            n += 1
        path.write_text("".join(chunk))
        files.append(path)
        written += size
        index += 1
    return files


def _timed(cmd: list[str], env: dict | None = None) -> tuple[float, int]:
    """Wall time and peak RSS (bytes) of a command, measured by GNU time: a child's
    ru_maxrss from wait4 would include this (large) process's RSS at fork time."""
    out = Path(tempfile.mkstemp(prefix="bench-rss-")[1])
    started = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(out), *cmd], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    took = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed")
    rss = int(out.read_text().strip().splitlines()[-1]) * 1024
    out.unlink()
    return took, rss


def logs(quick: bool) -> list[Result]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    total = (100 if quick else 1024) * 2**20
    files = _generate(tmp, total)
    size = sum(f.stat().st_size for f in files)
    cfg = tmp / "services.json"
    cfg.write_text(json.dumps({"services": [{"name": "big", "command": ["true"],
                                             "log_file": str(tmp / "big.log")}]}))
    env = clean_env(TTS_OPS_STATE_DIR=str(tmp / "state"), TTS_OPS_CONFIG=str(cfg))
    subprocess.run(["cat", *map(str, files)], stdout=subprocess.DEVNULL)  # warm the cache
    wc, _ = _timed(["wc", "-l", *map(str, files)])
    ours, rss = _timed(tts_ops("logs", "stats", "--json"), env=env)
    mbps = size / ours / 2**20
    r1 = Result(f"logs: stats over {size / 2**20:,.0f} MiB of JSON lines", mbps, "MiB/s",
                size / wc / 2**20, "wc -l over the same files", ">= 100 MiB/s, RSS < 100 MiB",
                note=f"peak RSS {rss / 2**20:.1f} MiB")
    r1.ok = mbps >= 100 and rss < 100 * 2**20
    for f in files:
        f.unlink()
    return [r1, _monitor_latency(tmp, env, cfg)]


def _monitor_latency(tmp: Path, env: dict, cfg: Path) -> Result:
    log = tmp / "big.log"
    log.write_text("")
    proc = subprocess.Popen(tts_ops("logs", "monitor", "--error-rate", "100", "--window", "10",
                                    "--json", "--duration", "30"), env=env,
                            stdout=subprocess.PIPE, text=True)
    crossed = {}
    stop = threading.Event()

    def writer() -> None:
        info = LINE.format(h=0, m=0, s=0, ms=0, lvl="INFO", lat=5)
        error = LINE.format(h=0, m=0, s=0, ms=0, lvl="ERROR", lat=5)
        sent_errors = 0
        with open(log, "a") as fh:
            start = time.perf_counter()
            n = 0
            while not stop.is_set():
                # 10,000 lines/s; from 2 s on, one line in 20 is an error
                is_error = time.perf_counter() - start > 2 and n % 20 == 0
                fh.write(error if is_error else info)
                if is_error:
                    sent_errors += 1
                    if sent_errors == 101 * 10 // 60 + 1 and "t" not in crossed:
                        fh.flush()
                        crossed["t"] = time.perf_counter()  # rate > 100/min over 10 s
                n += 1
                if n % 100 == 0:
                    fh.flush()
                    target = start + n / 10_000
                    delay = target - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)

    time.sleep(1.5)
    t = threading.Thread(target=writer, daemon=True)
    t.start()
    line = proc.stdout.readline()
    seen = time.perf_counter()
    stop.set()
    t.join(5)
    proc.kill()
    proc.wait()
    latency = seen - crossed["t"] if line and "t" in crossed else float("inf")
    r = Result("logs: monitor alert after the threshold is crossed (10,000 lines/s)",
               latency * 1000, "ms", 1000, "goal ceiling 1 s", "< 1 s")
    r.ok = latency < 1
    return r
