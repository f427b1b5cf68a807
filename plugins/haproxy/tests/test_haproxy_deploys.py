"""Routed services end to end with a real HAProxy, a real ``hey`` and the reference server:
zero failures for a pinned client through every deploy with no reload of HAProxy, an exact
canary share, and the router on every process backend."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import uuid

import pytest

from tts_ops.testing import free_port, make_host, run_cli

pytestmark = pytest.mark.slow


def _host(*backends):
    from tts_ops_strategies import plugin as strategies_plugin

    from tts_ops_haproxy import plugin as haproxy_plugin

    return make_host(*backends, strategies_plugin, haproxy_plugin)


def _router_state(cli, host, name):
    out = run_cli([*cli, "router", "status", name, "--json"], host=host)
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)[0]


def _identity(address):
    host, port = address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("POST", "/synthesize", body=json.dumps({"text": "Who?"}),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("X-TTS-Instance"), resp.getheader("X-TTS-Release")
    finally:
        conn.close()


def test_a_pinned_client_sees_no_error_and_haproxy_is_never_reloaded(haproxy, tmp_path):
    from tts_ops.testing.load import require_hey
    from tts_ops.testing.zero_downtime import problems, run_scenario
    from tts_ops_manual import plugin as manual_plugin

    require_hey()
    host = _host(manual_plugin)
    cli = ["-c", str(tmp_path / "zero-downtime.json"), "--state-dir", str(tmp_path / "state")]
    seen = []

    def after(step):
        name = json.loads((tmp_path / "zero-downtime.json").read_text())["services"][0]["name"]
        state = _router_state(cli, host, name)
        releases = json.loads(run_cli([*cli, "releases", "--json"], host=host).stdout)
        current = next(r["id"] for r in releases if r.get("current"))
        seen.append((step, state["worker_pid"], sorted(s["name"] for s in state["servers"]),
                     _identity(state["address"]), current))

    result = run_scenario(tmp_path, host, "manual", service={"router": "haproxy"},
                          after_step=after)
    assert problems(result) == [], "\n".join(s.output for s in result.steps)
    assert result.load.total > 100
    assert [s[0] for s in seen] == ["restart", "blue_green", "rolling", "canary", "rollback"]
    canary = next(s for s in result.steps if s.name == "canary").output
    assert re.search(r"canary at 50%: router counted \d+ requests, 0 failed", canary), canary
    workers = {s[1] for s in seen}
    assert len(workers) == 1 and None not in workers, seen  # the same worker throughout
    for step, _pid, servers, (status, instance, release), current in seen:
        assert len(servers) == 2, (step, servers)  # instances: 2, one generation left
        assert status == 200 and release == current, (step, release, current)
        assert instance.split("@")[1] in servers, (step, instance, servers)
    assert "router" in result.leftovers and '"running"' not in result.leftovers
    # weights move up before they move down: never a moment without a server (a 503)
    router_log = next((tmp_path / "state" / "logs").glob("*-router.log")).read_text()
    assert "New server registered" in router_log
    assert "has no server available" not in router_log


def _routed(tmp_path, prefix, deploy):
    """A routed reference server (one worker, manual) and the CLI to drive it as a user
    would: (name, port, argv before the subcommand, environment)."""
    port = free_port()
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [{
        "name": name, "port": port, "engine_type": "espeak", "workers": 1,
        "router": "haproxy", "process_manager": "manual", "deploy": deploy}]}))
    base = [sys.executable, "-m", "tts_ops", "-c", str(cfg), "--state-dir",
            str(tmp_path / "s")]
    return name, port, base, {**os.environ, "TTS_OPS_PLUGINS": "manual,strategies,haproxy"}


def test_a_canary_at_25_percent_gets_25_percent_and_sigint_rolls_it_back(haproxy, tmp_path):
    from tts_ops_haproxy.testing import canary_share, who

    name, port, base, env = _routed(tmp_path, "cn", {"progress_deadline_seconds": 300, "canary": {
        "steps": [25, 100], "min_samples": 10000, "step_pause_seconds": 0}})
    try:
        first = subprocess.run([*base, "start"], env=env, capture_output=True, text=True,
                               timeout=120)
        assert first.returncode == 0, first.stderr
        measured = canary_share(base, env, name, port, requests=1000)
        assert measured.step == 25
        assert sum(measured.served.values()) == 1000
        assert 200 <= measured.canary <= 300, measured.served  # 25% +/- 5 points
        assert measured.returncode == 1
        assert "interrupted (SIGINT)" in measured.stderr
        assert "the old release is still serving" in measured.stderr
        assert who("127.0.0.1", port, 10) == {measured.old: 10}
        state = json.loads(subprocess.run([*base, "router", "status", "--json"], env=env,
                                          capture_output=True, text=True).stdout)[0]
        assert [(s["name"], s["weight"]) for s in state["servers"]] == [
            (measured.old.split("@")[1], 100)]
    finally:
        subprocess.run([*base, "stop", "--all"], env=env, capture_output=True, timeout=120)
    left = subprocess.run(["pgrep", "-f", str(tmp_path / "s")], capture_output=True)
    assert left.stdout == b""


def test_a_deploy_killed_after_its_switch_is_recovered_behind_the_router(haproxy, tmp_path):
    """SIGKILL after the switch, during the drain: the next command finishes the deploy
    the journal way (the old release back), and the router routes only to what runs."""
    from tts_ops_haproxy.testing import who

    name, port, base, env = _routed(tmp_path, "kl", {"drain_seconds": 60})
    try:
        assert subprocess.run([*base, "start"], env=env, capture_output=True,
                              timeout=120).returncode == 0
        deploy = subprocess.Popen([*base, "deploy", name, "--strategy", "blue_green", "--json",
                                   "--skip-tests"], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True)
        for line in deploy.stdout:
            event = json.loads(line)
            if event["event"] == "phase_start" and event["phase"] == "drain":
                break
        assert set(who("127.0.0.1", port, 10)) == {f"{name}@green"}  # switched
        deploy.kill()
        deploy.wait()
        status = subprocess.run([*base, "status", "--json"], env=env, capture_output=True,
                                text=True, timeout=120)
        # a read-only command says so and re-routes nothing: the router still sends green
        assert "interrupted" in status.stderr and "tts-ops recover" in status.stderr
        assert {r["name"] for r in json.loads(status.stdout)} == {
            f"{name}-blue", f"{name}-green", f"{name}-router"}
        assert set(who("127.0.0.1", port, 10)) == {f"{name}@green"}
        recovered = subprocess.run([*base, "recover"], env=env, capture_output=True,
                                   text=True, timeout=120)
        assert recovered.returncode == 0 and "rolled back" in recovered.stderr, recovered
        status = subprocess.run([*base, "status", "--json"], env=env, capture_output=True,
                                text=True, timeout=120)
        rows = {r["name"]: r["state"] for r in json.loads(status.stdout)}
        assert rows == {f"{name}-blue": "running", f"{name}-router": "running"}, rows
        state = json.loads(subprocess.run([*base, "router", "status", "--json"], env=env,
                                          capture_output=True, text=True).stdout)[0]
        assert [(s["name"], s["weight"]) for s in state["servers"]] == [("blue", 100)]
        assert who("127.0.0.1", port, 10) == {f"{name}@blue": 10}
    finally:
        subprocess.run([*base, "stop", "--all"], env=env, capture_output=True, timeout=120)
    left = subprocess.run(["pgrep", "-f", str(tmp_path / "s")], capture_output=True)
    assert left.stdout == b""


@pytest.mark.slow
def test_a_router_restart_during_a_canary_step_restarts_its_sample(haproxy, tmp_path):
    """HAProxy killed during the 100% step: its counters begin again at 0, and the step
    counted -2162 requests and passed. Counters that go backwards restart the sample."""
    import signal
    import threading

    import psutil

    name, port, base, env = _routed(tmp_path, "cb", {"progress_deadline_seconds": 120,
                                                     "canary": {"steps": [50, 100],
                                                                "min_samples": 600,
                                                                "step_pause_seconds": 0}})
    done = threading.Event()

    def traffic() -> None:  # a client through the router, errors and all, until told
        while not done.is_set():
            try:
                _identity(f"127.0.0.1:{port}")
            except (OSError, http.client.HTTPException):  # a router killed mid-answer
                done.wait(0.05)

    try:
        first = subprocess.run([*base, "start"], env=env, capture_output=True, text=True,
                               timeout=120)
        assert first.returncode == 0, first.stderr
        client = threading.Thread(target=traffic, daemon=True)
        client.start()
        deploy = subprocess.Popen([*base, "deploy", name, "--strategy", "canary", "--json",
                                   "--skip-tests"], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        lines = []
        for line in deploy.stdout:
            lines.append(line)
            event = json.loads(line)
            if event["event"] == "weights" and 100 in event["weights"].values() and \
                    len(event["weights"]) > 1:
                # the step's counters were read: the router's begin again now
                for proc in psutil.process_iter(["name", "cmdline"]):
                    if proc.info["name"] == "haproxy" and any(
                            str(tmp_path) in a for a in proc.info["cmdline"] or []):
                        proc.send_signal(signal.SIGKILL)
                break
        out, err = deploy.communicate(timeout=180)
        done.set()
        client.join(timeout=60)
        text = "".join(lines) + out
        assert deploy.returncode == 0, err + text
        assert "counters went backwards (a restart); the step's sample starts again" in text
        counted = [int(n) for n in re.findall(r"router counted (-?\d+) requests", text)]
        assert counted and all(n >= 0 for n in counted), counted
    finally:
        done.set()
        subprocess.run([*base, "stop", "--all"], env=env, capture_output=True, timeout=120)
