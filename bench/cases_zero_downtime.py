"""Zero downtime: a restart's duration against the new generation's start-to-ready plus
``drain_seconds`` (same run), and what ``hey`` pinned to the configured address saw
through restart, blue_green, rolling, canary and rollback on each backend."""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import Result, clean_env, tts_ops


def zero_downtime(quick: bool) -> list[Result]:
    return [_restart(quick), *_pinned_clients()]


def _restart(quick: bool) -> Result:
    from tts_ops.testing import free_port
    from tts_ops.testing.load import PinnedLoad

    tmp = Path(tempfile.mkdtemp(prefix="bench-zd-"))
    drain = 1.0
    port = free_port()
    cfg = tmp / "services.json"
    cfg.write_text(json.dumps({"services": [
        {"name": "zd", "engine_type": "espeak", "port": port,
         "deploy": {"drain_seconds": drain}},
        {"name": "cold", "engine_type": "espeak", "port": free_port()}]}))
    env = clean_env(TTS_OPS_STATE_DIR=str(tmp / "state"), TTS_OPS_CONFIG=str(cfg))
    run = lambda *a: subprocess.run(tts_ops(*a, "--process-manager", "manual"),  # noqa: E731
                                    env=env, check=True, capture_output=True)
    run("start", "zd")
    restarts, starts = [], []
    try:
        with PinnedLoad(f"http://127.0.0.1:{port}/synthesize") as load:
            for _ in range(3 if quick else 6):
                t = time.perf_counter()
                run("restart", "zd")
                restarts.append(time.perf_counter() - t)
                t = time.perf_counter()
                run("start", "cold")
                starts.append(time.perf_counter() - t)
                run("stop", "cold")
    finally:
        subprocess.run(tts_ops("stop", "--all", "--force"), env=env, capture_output=True)
    figure = statistics.median(restarts)
    anchor = statistics.median(starts) + drain
    r = Result("zero downtime: restart of the reference server (manual)", figure * 1000, "ms",
               anchor * 1000, "tts-ops start to ready + drain_seconds", "ratio <= 1.2",
               note=f"hey pinned to the address meanwhile: {load.result.summary()}")
    r.ok = r.ratio <= 1.2 and load.result.clean
    return r


def _pinned_clients() -> list[Result]:
    from tts_ops_strategies import plugin as strategies_plugin
    from tts_ops_supervisor import plugin as supervisor_plugin
    from tts_ops_systemd import plugin as systemd_plugin
    from tts_ops_systemd.usermanager import UserManager

    from bench.common import Supervisord
    from tts_ops.testing import make_host
    from tts_ops.testing.zero_downtime import problems, run_scenario
    from tts_ops_manual import plugin as manual_plugin

    out = []
    for name, plugin, extra in (("manual", manual_plugin, None),
                                ("systemd", systemd_plugin, None),
                                ("supervisor", supervisor_plugin, "supervisord")):
        tmp = Path(tempfile.mkdtemp(prefix=f"bench-zd-{name}-"))
        host = make_host(plugin, strategies_plugin)
        if name == "systemd":
            with UserManager():
                result = run_scenario(tmp, host, name)
        elif extra:
            with Supervisord() as daemon:
                result = run_scenario(tmp, host, name, ["--supervisor-conf", str(daemon.conf)])
        else:
            result = run_scenario(tmp, host, name)
        failed = sum(n for code, n in result.load.statuses.items() if code != 200)
        failed += sum(result.load.errors.values())
        r = Result(f"zero downtime: hey (4 keep-alive connections) through restart,"
                   f" blue_green, rolling, canary, rollback ({name})", failed, "failed requests",
                   goal="0 errors, 0 non-200", note=result.load.summary())
        r.ok = failed == 0 and not problems(result)
        out.append(r)
    return out
