"""Orchestration with real processes: phases, conditions, failures, stop order, monitor."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest

from tts_ops.testing import DUMMY, free_port, make_host, run_cli, wait_for
from tts_ops_manual import plugin as manual_plugin


def svc(name, *args, deps=(), port=None, **extra):
    port = port or free_port()
    return {"name": name, "port": port, "notify": True, "restart_delay": 0,
            "command": [*DUMMY, "--port", str(port), *args],
            "depends_on": [d if isinstance(d, dict) else {"service_name": d} for d in deps],
            **extra}


class Orch:
    def __init__(self, tmp_path, services, orchestration=None):
        self.tmp = tmp_path
        self.cfg = tmp_path / "c.json"
        self.cfg.write_text(json.dumps({"services": services}))
        self.orch = None
        if orchestration is not None:
            self.orch = tmp_path / "orchestration_config.json"
            self.orch.write_text(json.dumps(orchestration))
        self.host = make_host(manual_plugin)

    def cli(self, *args):
        extra = ["--orchestration", str(self.orch)] if self.orch and args[0] == "orchestrate" \
            else []
        pm = ["--process-manager", "manual"] if args[:2] in (("orchestrate", "start"),
                                                             ("orchestrate", "stop"),
                                                             ("orchestrate", "status")) else []
        return run_cli(["-c", str(self.cfg), "--state-dir", str(self.tmp / "st"), *args,
                        *extra, *pm], host=self.host)

    def status(self):
        return {r["name"]: r for r in json.loads(self.cli("status", "--json").stdout)}


@pytest.fixture
def cleanup():
    made = []
    yield made.append
    for o in made:
        o.cli("stop", "--all", "--force")


def test_cycle_is_printed(tmp_path):
    o = Orch(tmp_path, [svc("a", deps=["b"]), svc("b", deps=["c"]), svc("c", deps=["a"])])
    out = o.cli("orchestrate", "plan")
    assert out.exit_code == 2
    assert "dependency cycle: a -> b -> c -> a" in out.stderr


@pytest.mark.parametrize(("deps", "message"), [
    (["api"], "'api' cannot depend on itself"),
    (["dbb"], "unknown service 'dbb'; did you mean 'db'?"),
    ([{"service_name": "db", "timeout": -5}], "timeout: must be 0-86400 (got -5"),
    ([{"service_name": "ext", "condition": "completed", "health_check_url": "http://x/"}],
     "'completed' needs a configured service"),
])
def test_bad_graphs(tmp_path, deps, message):
    o = Orch(tmp_path, [svc("api", deps=deps), svc("db")])
    out = o.cli("orchestrate", "plan")
    assert out.exit_code == 2
    assert message in out.stderr
    assert "Traceback" not in out.output


def test_seed_orchestration_file_and_plan(tmp_path):
    o = Orch(tmp_path, [svc("tts-primary")], {"dependencies": [{
        "service_name": "monitoring-api", "dependency_type": "optional", "timeout": 15,
        "health_check_url": "http://localhost:8000/health"}]})
    out = o.cli("orchestrate", "plan")
    assert out.exit_code == 0, out.output
    assert ("tts-primary looks at monitoring-api <http://localhost:8000/health> once:"
            " healthy, optional, never waited for") in out.stdout


@pytest.mark.slow
def test_phases_start_in_parallel_and_report_waits(tmp_path, cleanup):
    o = Orch(tmp_path, [svc("db", "--ready-after", "1"), svc("cache", "--ready-after", "1"),
                        svc("api", deps=["db", {"service_name": "cache", "condition": "ready"}]),
                        svc("web", deps=["api"])])
    cleanup(o)
    started = time.monotonic()
    out = o.cli("orchestrate", "start", "--json")
    took = time.monotonic() - started
    assert out.exit_code == 0, out.output
    report = {r["service"]: r for r in json.loads(out.stdout)}
    assert [report[n]["phase"] for n in ("db", "cache", "api", "web")] == [1, 1, 2, 3]
    assert all(r["result"] == "started" for r in report.values())
    assert [w["outcome"] for w in report["api"]["waits"]] == ["ok", "ok"]
    assert took < 1.9  # db and cache came up side by side, not one after the other
    again = o.cli("orchestrate", "start", "--json")
    assert {r["result"] for r in json.loads(again.stdout)} == {"already_running"}


def test_failed_required_dependency_blocks_dependents(tmp_path, cleanup):
    o = Orch(tmp_path, [svc("db", command=[sys.executable, "-c", "raise SystemExit(2)"],
                            notify=False, health_check="none", max_restarts=0,
                            start_seconds=1),
                        svc("api", deps=["db"]), svc("web", deps=["api"]),
                        svc("side")])
    cleanup(o)
    out = o.cli("orchestrate", "start", "--json")
    assert out.exit_code == 1
    report = {r["service"]: r for r in json.loads(out.stdout)}
    assert report["db"]["result"] == "failed"
    assert report["api"]["result"] == "blocked" and "required db" in report["api"]["detail"]
    assert report["web"]["result"] == "blocked"
    assert report["side"]["result"] == "started"
    assert o.status()["api"]["state"] == "stopped"


def test_a_dependency_that_exits_fails_the_wait_at_once(tmp_path, cleanup):
    # db says READY, then dies after 1 s: api waits for "healthy" with a 60 s timeout,
    # and its health never passes: the wait must end when db exits, not after 60 s
    o = Orch(tmp_path, [svc("db", "--exit-after", "1.0", "--fail-health-after", "0",
                            max_restarts=0),
                        svc("api", deps=[{"service_name": "db", "timeout": 60}])])
    cleanup(o)
    started = time.monotonic()
    out = o.cli("orchestrate", "start", "--json")
    assert time.monotonic() - started < 15
    report = {r["service"]: r for r in json.loads(out.stdout)}
    assert report["api"]["result"] == "blocked"
    assert report["api"]["waits"][0]["outcome"] == "failed"


def test_completed_condition_waits_for_a_oneshot_job(tmp_path, cleanup):
    marker = tmp_path / "prepared"
    job = {"name": "prepare-model", "oneshot": True, "notify": False, "health_check": "none",
           "start_seconds": 0, "max_restarts": 0,
           "command": [sys.executable, "-c", f"import time; time.sleep(0.5);"
                       f" open({str(marker)!r}, 'w').write('ok')"]}
    api = svc("api", deps=[{"service_name": "prepare-model", "condition": "completed"}])
    o = Orch(tmp_path, [job, api])
    cleanup(o)
    out = o.cli("orchestrate", "start", "--json")
    assert out.exit_code == 0, out.output
    report = {r["service"]: r for r in json.loads(out.stdout)}
    assert report["prepare-model"]["result"] in ("started", "completed")
    assert report["api"]["waits"][0]["outcome"] == "ok" and marker.exists()


def test_unreachable_health_url_names_the_error(tmp_path, cleanup):
    port = free_port()
    o = Orch(tmp_path, [svc("api", deps=[{"service_name": "ext", "timeout": 0.5,
                                           "health_check_url": f"http://127.0.0.1:{port}/h"}])])
    cleanup(o)
    out = o.cli("orchestrate", "start", "--json")
    assert out.exit_code == 1
    (r,) = json.loads(out.stdout)
    assert r["result"] == "blocked" and "connection refused" in r["detail"]


@pytest.mark.slow
def test_flapping_dependency_is_waited_out(tmp_path, cleanup):
    """A dependency that says READY but fails its health check at first is waited for."""
    # db says READY=1 at once, but answers 500 on /health for its first 1.5 s
    o = Orch(tmp_path, [svc("db", "--healthy-after", "1.5"),
                        svc("api", deps=[{"service_name": "db", "timeout": 10}])])
    cleanup(o)
    out = o.cli("orchestrate", "start", "--json")
    assert out.exit_code == 0, out.output
    api = next(r for r in json.loads(out.stdout) if r["service"] == "api")
    assert api["waits"][0]["outcome"] == "ok"
    assert api["waits"][0]["seconds"] >= 1.0  # it really waited for the health check


def test_optional_dependency_down_warns_and_starts_without_waiting(tmp_path, cleanup):
    # a wait for its 600 s timeout would outlast the test's own time limit
    o = Orch(tmp_path, [svc("api"), svc("web", deps=["api"])], {"dependencies": [{
        "service_name": "monitoring-api", "dependency_type": "optional", "timeout": 600,
        "health_check_url": f"http://127.0.0.1:{free_port()}/health"}]})
    cleanup(o)
    out = o.cli("orchestrate", "start")
    assert out.exit_code == 0
    assert "warning: optional dependency monitoring-api is down" in out.stdout
    o.cli("stop", "--all")
    rows = json.loads(o.cli("orchestrate", "start", "--json").stdout)
    waits = [w for r in rows for w in r["waits"] if w["dependency"] == "monitoring-api"]
    assert len(waits) == 2 and {w["outcome"] for w in waits} == {"down"}


def test_resource_precondition(tmp_path, cleanup):
    o = Orch(tmp_path, [svc("big", min_free_memory_mb=10**9)])
    cleanup(o)
    out = o.cli("orchestrate", "start")
    assert out.exit_code == 1
    assert "needs 1000000000 MB of free memory" in out.stdout


def test_stop_goes_in_reverse_phase_order(tmp_path, cleanup):
    o = Orch(tmp_path, [svc("db"), svc("api", deps=["db"]), svc("web", deps=["api"])])
    cleanup(o)
    assert o.cli("orchestrate", "start").exit_code == 0
    out = o.cli("orchestrate", "stop")
    assert [ln.split(":")[0] for ln in out.stdout.splitlines()] == ["web", "api", "db"]
    assert {r["state"] for r in o.status().values()} == {"stopped"}


def test_status_says_what_a_phase_is_blocked_on(tmp_path, cleanup):
    o = Orch(tmp_path, [svc("db"), svc("api", deps=["db"])])
    cleanup(o)
    out = o.cli("orchestrate", "status", "--json")
    api = next(n for n in json.loads(out.stdout)["nodes"] if n["service"] == "api")
    assert api["state"] == "stopped" and api["blocked_on"][0].startswith("db (healthy)")


@pytest.mark.slow
def test_killed_orchestrator_leaves_truthful_status_and_start_converges(tmp_path, cleanup):
    o = Orch(tmp_path, [svc("db", "--ready-after", "0.2"), svc("slow", "--ready-after", "3",
                                                               deps=["db"]),
                        svc("web", deps=["slow"])])
    cleanup(o)
    proc = subprocess.Popen([sys.executable, "-m", "tts_ops", "-c", str(o.cfg), "--state-dir",
                             str(tmp_path / "st"), "orchestrate", "start",
                             "--process-manager", "manual"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_for(lambda: o.status()["slow"]["state"] in ("starting", "running"), timeout=20,
             message="slow to be starting")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rows = o.status()
    assert rows["db"]["state"] == "running" and rows["web"]["state"] == "stopped"
    out = o.cli("orchestrate", "start", "--json")
    assert out.exit_code == 0, out.output
    assert {r["state"] for r in o.status().values()} == {"running"}


def test_monitor_restarts_failed_services_and_holds_dependents(tmp_path, cleanup):
    import http.server
    import threading

    ext_port = free_port()
    o = Orch(tmp_path, [svc("db", max_restarts=0),
                        svc("api", max_restarts=0, deps=["db", {
                            "service_name": "auth", "timeout": 0.5,
                            "health_check_url": f"http://127.0.0.1:{ext_port}/health"}])])
    cleanup(o)

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a):
            pass

    auth = http.server.ThreadingHTTPServer(("127.0.0.1", ext_port), Ok)
    threading.Thread(target=auth.serve_forever, daemon=True).start()
    assert o.cli("orchestrate", "start").exit_code == 0
    auth.shutdown()
    auth.server_close()  # the external dependency goes down
    for name in ("api", "db"):
        os.kill(o.status()[name]["pid"], signal.SIGKILL)
    wait_for(lambda: {r["state"] for r in o.status().values()} == {"failed"}, timeout=10,
             message="both failed (max_restarts 0)")
    out = o.cli("orchestrate", "monitor", "--once")
    assert out.exit_code == 0
    assert "restarted db" in out.stderr
    assert "holding api: waiting for auth (healthy)" in out.stderr
    assert o.status()["api"]["state"] == "failed"
    auth = http.server.ThreadingHTTPServer(("127.0.0.1", ext_port), Ok)  # back up
    threading.Thread(target=auth.serve_forever, daemon=True).start()
    try:
        out = o.cli("orchestrate", "monitor", "--once")
        # a long-running monitor says "resumed"; each --once run starts with no memory
        assert "restarted api" in out.stderr or "resumed api" in out.stderr
        assert {r["state"] for r in o.status().values()} == {"running"}
    finally:
        auth.shutdown()


def test_monitor_leaves_what_an_operator_stopped_stopped(tmp_path, cleanup):
    o = Orch(tmp_path, [svc("db", max_restarts=0), svc("api", deps=["db"])])
    cleanup(o)
    assert o.cli("orchestrate", "start").exit_code == 0
    assert o.cli("stop", "--all").exit_code == 0
    out = o.cli("orchestrate", "monitor", "--once")
    assert "leaving db stopped: an operator stopped it" in out.stderr
    assert "restarted" not in out.stderr
    assert "checked 2 services: 2 left stopped" in out.stderr  # --once says what it saw
    assert {r["state"] for r in o.status().values()} == {"stopped"}
    assert o.cli("start", "db").exit_code == 0  # started again: a failure is a failure again
    os.kill(o.status()["db"]["pid"], signal.SIGKILL)
    wait_for(lambda: o.status()["db"]["state"] == "failed", message="db failed")
    out = o.cli("orchestrate", "monitor", "--once")
    assert "restarted db" in out.stderr and "leaving api stopped" in out.stderr
    assert o.cli("orchestrate", "start").exit_code == 0  # orchestrate start: all wanted again
    assert o.cli("orchestrate", "stop").exit_code == 0
    out = o.cli("orchestrate", "monitor", "--once")
    assert "leaving api stopped" in out.stderr and "restarted" not in out.stderr


def test_monitor_speaks_notify_and_stops_on_sigterm(tmp_path, cleanup):
    o = Orch(tmp_path, [svc("db")])
    cleanup(o)
    name = f"orch-{uuid.uuid4().hex}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind("\0" + name)
    listener.settimeout(20)
    env = {**os.environ, "NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "400000"}
    proc = subprocess.Popen([sys.executable, "-m", "tts_ops", "-c", str(o.cfg), "--state-dir",
                             str(tmp_path / "st"), "orchestrate", "monitor", "--interval",
                             "0.5", "--process-manager", "manual"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        messages = [listener.recv(4096).decode()]
        assert messages[0].startswith("READY=1")
        assert "WATCHDOG=1" in listener.recv(4096).decode()
        wait_for(lambda: o.status()["db"]["state"] == "running", message="db started")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        rest = []
        listener.settimeout(1)
        try:
            while True:
                rest.append(listener.recv(4096).decode())
        except TimeoutError:
            pass
        assert any("STOPPING=1" in m for m in rest)
    finally:
        if proc.poll() is None:
            proc.kill()
        listener.close()
