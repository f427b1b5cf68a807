"""Orchestration: 10 services in 4 phases with known readiness delays; total start time
against the critical path (per phase its slowest member, plus the cost of starting one
service, measured in the same run)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Result, clean_env, tts_ops

PHASES = [[0.3, 0.6, 0.9], [0.5, 0.2, 0.4], [0.8, 0.3], [0.4, 0.6]]


def orchestrate(quick: bool) -> list[Result]:
    import socket

    tmp = Path(tempfile.mkdtemp(prefix="bench-orch-"))
    dummy = [sys.executable, "-m", "tts_ops.testing.dummy_service"]
    services = []
    previous: list[str] = []
    held: list[socket.socket] = []  # kept bound until every port is chosen: no repeats

    def free_port() -> int:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        held.append(sock)
        return sock.getsockname()[1]

    for p, delays in enumerate(PHASES):
        names = []
        for i, delay in enumerate(delays):
            port = free_port()
            name = f"p{p}s{i}"
            services.append({"name": name, "port": port, "notify": True,
                             "command": [*dummy, "--port", str(port), "--ready-after",
                                         str(delay)],
                             "depends_on": [{"service_name": d, "condition": "ready"}
                                            for d in previous]})
            names.append(name)
        previous = names
    port = free_port()
    for sock in held:
        sock.close()
    services.append({"name": "single", "port": port, "notify": True,
                     "command": [*dummy, "--port", str(port)]})
    cfg = tmp / "services.json"
    cfg.write_text(json.dumps({"services": services}))
    env = clean_env(TTS_OPS_STATE_DIR=str(tmp / "state"), TTS_OPS_CONFIG=str(cfg))

    def run(*args):
        done = subprocess.run(tts_ops(*args, "--process-manager", "manual"), env=env,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"tts-ops {' '.join(args)}: {done.stderr.strip()}")
        return done

    totals, singles = [], []
    try:
        for _ in range(2 if quick else 4):
            t = time.perf_counter()
            run("start", "single")
            singles.append(time.perf_counter() - t)
            run("stop", "single")
            t = time.perf_counter()
            run("orchestrate", "start")
            totals.append(time.perf_counter() - t)
            run("orchestrate", "stop")
    finally:
        subprocess.run(tts_ops("stop", "--all", "--force"), env=env, capture_output=True)
    # a service's own start cost, without the CLI's start-up (orchestrate pays that once)
    cli = []
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run(tts_ops("--version"), env=env, check=True, capture_output=True)
        cli.append(time.perf_counter() - t)
    overhead = max(0.0, statistics.median(singles) - statistics.median(cli))
    critical = sum(max(d) for d in PHASES) + overhead * len(PHASES) + statistics.median(cli)
    r = Result("orchestrate: 10 services in 4 phases", statistics.median(totals) * 1000, "ms",
               critical * 1000, "critical path: slowest per phase + a start's own cost",
               "ratio <= 1.1")
    r.ok = r.ratio <= 1.1
    return [r]
