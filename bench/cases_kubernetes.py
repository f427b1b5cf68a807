"""``tts-ops export kubernetes`` of 20 services against ``tts-ops config validate`` of the
same config (the anchor: reading and validating it is most of what an export does), both
cold processes, medians of the same number of runs in one session. Goal: <= 1.5x."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from bench.common import Result, clean_env, median_run, tts_ops

N = 20


def kubernetes(quick: bool) -> list[Result]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-k8s-"))
    try:
        services = [{"name": f"k{i:02d}", "port": 9000 + 10 * i, "instances": 1 + i % 3,
                     "memory_max": "512M", "deploy": {"strategy": ("direct", "rolling",
                                                                   "blue_green",
                                                                   "canary")[i % 4]},
                     "env": {"A": f"value {i}"}} for i in range(N)]
        cfg = tmp / "services.json"
        cfg.write_text(json.dumps({"services": services}))
        env = clean_env(TTS_OPS_STATE_DIR=str(tmp / "state"))
        repeat = 5 if quick else 11
        base = ("-c", str(cfg))
        # warm the page cache and the validated-config cache alike for both sides
        median_run(tts_ops(*base, "config", "validate"), 1, env)
        median_run(tts_ops(*base, "export", "kubernetes", "--image", "r/t:1"), 1, env)
        anchor = median_run(tts_ops(*base, "config", "validate"), repeat, env)
        figure = median_run(tts_ops(*base, "export", "kubernetes", "--image", "r/t:1"),
                            repeat, env)
        ratio = figure / anchor
        return [Result("export kubernetes of 20 services", figure * 1000, "ms",
                       anchor * 1000, "tts-ops config validate, same config", "<= 1.5x",
                       ratio <= 1.5)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
