"""Deploys: a blue-green deploy's duration against the new instance's own start-to-ready
time plus ``drain_seconds``, measured in the same run."""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import Result, clean_env, tts_ops


def deploy(quick: bool) -> list[Result]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = Path(tempfile.mkdtemp(prefix="bench-deploy-"))
    drain = 1.0
    cfg = tmp / "services.json"
    cfg.write_text(json.dumps({"services": [{
        "name": "bg", "engine_type": "espeak", "port": port,
        "deploy": {"drain_seconds": drain}}, {
        "name": "cold", "engine_type": "espeak", "port": port + 10}]}))
    env = clean_env(TTS_OPS_STATE_DIR=str(tmp / "state"), TTS_OPS_CONFIG=str(cfg))
    run = lambda *a: subprocess.run(tts_ops(*a, "--process-manager", "manual"),  # noqa: E731
                                    env=env, check=True, capture_output=True)
    run("deploy", "bg", "--strategy", "blue_green")
    deploys, starts = [], []
    try:
        for _ in range(3 if quick else 6):
            t = time.perf_counter()
            run("deploy", "bg", "--strategy", "blue_green")
            deploys.append(time.perf_counter() - t)
            t = time.perf_counter()
            run("start", "cold")
            starts.append(time.perf_counter() - t)
            run("stop", "cold")
    finally:
        subprocess.run(tts_ops("stop", "--all", "--force"), env=env, capture_output=True)
    figure = statistics.median(deploys)
    anchor = statistics.median(starts) + drain
    r = Result("deploy: blue-green of the reference server", figure * 1000, "ms",
               anchor * 1000, "tts-ops start to ready + drain_seconds", "ratio <= 1.2")
    r.ok = r.ratio <= 1.2
    return [r]
