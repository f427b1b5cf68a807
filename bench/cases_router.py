"""The HAProxy router: the hop it adds to ``/synthesize`` (p50 straight to an instance and
through HAProxy, one keep-alive client, alternating, same run), what ``hey`` pinned to the
configured port sees through blue_green, rolling (2 instances) and canary deploys with
HAProxy's worker pid before and after, and a canary's measured share at its 25% step."""

from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Result, clean_env, tts_ops


def router(quick: bool) -> list[Result]:
    return [_hop(quick), *_deploys(), _share()]


def _post(conn: http.client.HTTPConnection, body: bytes) -> float:
    t = time.perf_counter()
    conn.request("POST", "/synthesize", body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    resp.read()
    if resp.status != 200:
        raise RuntimeError(f"/synthesize answered {resp.status}")
    return time.perf_counter() - t


def _hop(quick: bool) -> Result:
    from tts_ops.testing import free_port

    tmp = Path(tempfile.mkdtemp(prefix="bench-router-"))
    port = free_port()
    cfg = tmp / "services.json"
    cfg.write_text(json.dumps({"services": [{
        "name": "hop", "engine_type": "espeak", "port": port, "workers": 1,
        "router": "haproxy", "process_manager": "manual"}]}))
    env = clean_env(TTS_OPS_STATE_DIR=str(tmp / "state"), TTS_OPS_CONFIG=str(cfg))
    subprocess.run(tts_ops("start"), env=env, check=True, capture_output=True)
    try:
        rows = json.loads(subprocess.run(tts_ops("status", "--json"), env=env, check=True,
                                         capture_output=True).stdout)
        private = next(r["port"] for r in rows if r["name"] == "hop-blue")
        direct = http.client.HTTPConnection("127.0.0.1", private, timeout=30)
        routed = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        body = json.dumps({"text": "Hello."}).encode()
        for conn in (direct, routed):  # warm both paths and the engine
            for _ in range(20):
                _post(conn, body)
        straight, through = [], []
        for _ in range(300 if quick else 1000):
            straight.append(_post(direct, body))
            through.append(_post(routed, body))
    finally:
        subprocess.run(tts_ops("stop", "--all"), env=env, capture_output=True)
    p50_direct = statistics.median(straight) * 1000
    p50_routed = statistics.median(through) * 1000
    hop = p50_routed - p50_direct
    r = Result("router: added latency of the HAProxy hop, /synthesize p50", hop, "ms",
               goal="< 1 ms",
               note=f"p50 {p50_routed:.2f} ms through HAProxy vs {p50_direct:.2f} ms straight"
                    f" to the instance, {len(through)} alternating keep-alive requests each")
    r.ok = hop < 1.0
    return r


def _deploys() -> list[Result]:
    from tts_ops_strategies import plugin as strategies_plugin

    from tts_ops.testing import make_host, run_cli
    from tts_ops.testing.zero_downtime import problems, run_scenario
    from tts_ops_haproxy import plugin as haproxy_plugin
    from tts_ops_manual import plugin as manual_plugin

    tmp = Path(tempfile.mkdtemp(prefix="bench-router-zd-"))
    host = make_host(manual_plugin, strategies_plugin, haproxy_plugin)
    cli = ["-c", str(tmp / "zero-downtime.json"), "--state-dir", str(tmp / "state")]
    workers: dict[str, int | None] = {}

    def after(step: str) -> None:
        out = json.loads(run_cli([*cli, "router", "status", "--json"], host=host).stdout)
        workers[step] = out[0]["worker_pid"]

    result = run_scenario(tmp, host, "manual", service={"router": "haproxy"},
                          after_step=after)
    failed = sum(n for code, n in result.load.statuses.items() if code != 200)
    failed += sum(result.load.errors.values())
    r = Result("router: hey (4 keep-alive connections) on the configured port through"
               " restart, blue_green, rolling (2 instances), canary, rollback (manual)",
               failed, "failed requests", goal="0 errors, 0 non-200",
               note=result.load.summary())
    r.ok = failed == 0 and not problems(result)
    pids = sorted({p for p in workers.values() if p})
    same = len(pids) == 1 and len(workers) == 5
    w = Result("router: HAProxy worker processes seen after each of the 5 steps", len(pids),
               "worker pids", goal="1 (no reload, no restart)",
               note=f"after {', '.join(f'{k}: {v}' for k, v in workers.items())}")
    w.ok = same
    return [r, w]


def _share() -> Result:
    from tts_ops.testing import free_port
    from tts_ops_haproxy.testing import canary_share

    tmp = Path(tempfile.mkdtemp(prefix="bench-router-canary-"))
    port = free_port()
    cfg = tmp / "services.json"
    cfg.write_text(json.dumps({"services": [{
        "name": "share", "engine_type": "espeak", "port": port, "workers": 1,
        "router": "haproxy", "process_manager": "manual",
        "deploy": {"progress_deadline_seconds": 300, "canary": {
            "steps": [25, 100], "min_samples": 10000, "step_pause_seconds": 0}}}]}))
    base = [sys.executable, "-m", "tts_ops", "-c", str(cfg), "--state-dir", str(tmp / "s")]
    env = {**os.environ, "TTS_OPS_PLUGINS": "manual,strategies,haproxy"}
    subprocess.run([*base, "start"], env=env, check=True, capture_output=True)
    try:
        measured = canary_share(base, env, "share", port, requests=1000)
    finally:
        subprocess.run([*base, "stop", "--all"], env=env, capture_output=True)
    share = measured.share * 100
    r = Result("router: share of 1000 requests served by a canary at its 25% step", share,
               "%", goal="25 +/- 5", note=f"served: {measured.served}")
    r.ok = abs(share - measured.step) <= 5 and measured.step == 25
    return r
