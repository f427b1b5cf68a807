"""The operator's live views with 20 reference servers running: the CPU that ``tts-ops top``
(in a real terminal, tmux) and ``tts-ops web`` (with no page open, and with one page's polls)
cost while nothing happens, and how fast ``/api/status`` answers; supervisord with 20
programs, idle, and its ``getAllProcessInfo`` (what its web page shows) are the anchors."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import psutil

from bench.common import Result, Supervisord, clean_env, percentile, tts_ops

N = 20
WINDOW_S = 10.0


def _cpu_percent(pids: list[int], seconds: float) -> float:
    """Percent of one core the processes used over ``seconds`` (their children included)."""
    def total() -> float:
        spent = 0.0
        for pid in pids:
            try:
                proc = psutil.Process(pid)
                for p in [proc, *proc.children(recursive=True)]:
                    t = p.cpu_times()
                    spent += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return spent

    before, t0 = total(), time.monotonic()
    time.sleep(seconds)
    return (total() - before) / (time.monotonic() - t0) * 100


def views(quick: bool) -> list[Result]:
    if shutil.which("tmux") is None:
        raise RuntimeError("bench: tmux (Debian package) is needed for tts-ops top")
    from tts_ops.testing import free_port

    window = WINDOW_S / 2 if quick else WINDOW_S
    tmp = Path(tempfile.mkdtemp(prefix="bench-views-"))
    services = []
    for i in range(N):
        services.append({"name": f"v{i:02d}", "port": free_port(), "workers": 1,
                         "process_manager": "manual"})
    cfg = tmp / "services.json"
    cfg.write_text(json.dumps({"services": services}))
    env = clean_env(TTS_OPS_STATE_DIR=str(tmp / "state"), TTS_OPS_CONFIG=str(cfg),
                    TTS_OPS_PLUGINS="manual")
    results: list[Result] = []
    sup = Supervisord()
    for i in range(N):
        sup.add_program(f"p{i:02d}", "sleep 1000000")
    sup.start()
    session = f"bench-top-{uuid.uuid4().hex[:8]}"
    web = None
    try:
        subprocess.run(tts_ops("start", "--all"), env=env, check=True, capture_output=True)
        sup.rpc().supervisor.startAllProcesses()
        time.sleep(2)  # everything settled before the idle windows
        anchor = _cpu_percent([sup.proc.pid], window)

        # --- top, in a real terminal, refreshing every second ---
        subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "200", "-y", "40",
                        *[f"-e{k}={v}" for k, v in env.items() if k.startswith("TTS_OPS_")],
                        *tts_ops("top", "--interval", "1")], check=True)
        pane_pid = int(subprocess.run(["tmux", "list-panes", "-t", session, "-F",
                                       "#{pane_pid}"], capture_output=True, text=True,
                                      check=True).stdout.split()[0])
        time.sleep(3)  # started and one refresh behind it
        top_cpu = _cpu_percent([pane_pid], window)
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        r = Result(f"top: CPU while idle, {N} services, 1 s refresh", top_cpu, "% of a core",
                   anchor, f"supervisord idle, {N} programs", "< 2% of one core")
        r.ok = top_cpu < 2
        results.append(r)

        # --- web: no page open, then one page polling ---
        port = free_port()
        web = subprocess.Popen(tts_ops("web", "--port", str(port)), env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        web.stdout.readline()
        url = f"http://127.0.0.1:{port}"
        httpx.get(f"{url}/api/status", timeout=10).raise_for_status()
        time.sleep(1)
        web_idle = _cpu_percent([web.pid], window)
        r = Result(f"web: CPU while idle, no page open, {N} services", web_idle,
                   "% of a core", anchor, f"supervisord idle, {N} programs", "< 2% of one core")
        r.ok = web_idle < 2
        results.append(r)

        stop = threading.Event()

        def page() -> None:  # what the page's script asks for every --refresh (2 s)
            with httpx.Client(timeout=10) as client:
                while not stop.is_set():
                    client.get(f"{url}/api/status")
                    client.get(f"{url}/api/logs/v00?lines=40")
                    stop.wait(2.0)

        poller = threading.Thread(target=page, daemon=True)
        poller.start()
        time.sleep(1)
        web_page = _cpu_percent([web.pid], window)
        stop.set()
        poller.join()
        r = Result(f"web: CPU with one page open (2 s refresh), {N} services", web_page,
                   "% of a core", anchor, f"supervisord idle, {N} programs", "-",
                   note="the issue's 2% is for idle; a page open is reported, not a goal")
        results.append(r)

        # --- /api/status latency ---
        times, rpc_times = [], []
        rpc = sup.rpc()
        with httpx.Client(timeout=10) as client:
            for _ in range(20 if quick else 50):
                t = time.perf_counter()
                client.get(f"{url}/api/status").raise_for_status()
                times.append(time.perf_counter() - t)
                t = time.perf_counter()
                rpc.supervisor.getAllProcessInfo()
                rpc_times.append(time.perf_counter() - t)
        ours = statistics.median(times) * 1000
        r = Result(f"web: /api/status of {N} services, median", ours, "ms",
                   statistics.median(rpc_times) * 1000,
                   f"supervisord getAllProcessInfo ({N} programs)", "< 50 ms",
                   note=f"p95 {percentile(times, 95) * 1000:.1f} ms")
        r.ok = ours < 50 and percentile(times, 95) * 1000 < 50
        results.append(r)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        if web is not None:
            web.terminate()
            web.wait(timeout=20)
        subprocess.run(tts_ops("stop", "--all", "--force"), env=env, capture_output=True)
        sup.stop()
    return results
