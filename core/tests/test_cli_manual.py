"""The CLI end to end with the manual backend: real supervisors and processes."""

from __future__ import annotations

import json
import sys

import pytest

from tts_ops import hookimpl
from tts_ops.testing import DUMMY, free_port, make_host, run_cli
from tts_ops.testing.terminal import Terminal
from tts_ops_manual import plugin as manual_plugin


class Recorder:
    def __init__(self):
        self.events = []

    @hookimpl
    def tts_ops_service_ready(self, service, backend, status):
        self.events.append(("ready", service.name, backend, status.ready))

    @hookimpl
    def tts_ops_service_stopped(self, service, backend):
        self.events.append(("stopped", service.name, backend))

    @hookimpl
    def tts_ops_service_failed(self, service, reason):
        self.events.append(("failed", service.name, reason))


@pytest.fixture
def env(tmp_path):
    ports = [free_port() for _ in range(3)]
    services = [
        {"name": f"svc{i}", "port": p, "command": [*DUMMY, "--port", str(p), "--print", f"hi{i}"],
         "notify": True, "health_check": "http:/health", "restart_delay": 0}
        for i, p in enumerate(ports)
    ]
    services.append({"name": "broken", "notify": False, "health_check": "none",
                     "start_seconds": 3, "restart_delay": 0, "max_restarts": 1,
                     "command": [sys.executable, "-c",
                                 "print('\\n'.join(f'out {i}' for i in range(40))); exit(7)"]})
    cfg = tmp_path / "tts_services.json"
    cfg.write_text(json.dumps({"services": services}))
    recorder = Recorder()
    host = make_host(manual_plugin, recorder)
    base = ["-c", str(cfg), "--state-dir", str(tmp_path / "state")]

    def cli(*args):
        return run_cli([*base, *args], host=host)

    yield cli, recorder
    cli("stop", "--all", "--force")


def test_start_all_status_stop_all(env):
    cli, recorder = env
    result = cli("start", "svc0", "svc1", "svc2")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""  # no plugin (auto-registration) warned
    rows = json.loads(cli("status", "svc0", "svc1", "svc2", "--json").stdout)
    assert [r["state"] for r in rows] == ["running"] * 3
    assert all(r["ready"] and r["pid"] and r["rss_bytes"] > 0 for r in rows)
    assert {e[:3] for e in recorder.events} >= {("ready", f"svc{i}", "manual") for i in range(3)}
    result = cli("stop", "svc0", "svc1", "svc2")
    assert result.exit_code == 0
    rows = json.loads(cli("status", "svc0", "svc1", "svc2", "--json").stdout)
    assert [r["state"] for r in rows] == ["stopped"] * 3


def test_failed_start_exits_1_with_last_20_log_lines(env):
    cli, recorder = env
    result = cli("start", "broken")
    assert result.exit_code == 1
    err = result.stderr
    assert "tts-ops: error: broken: exited 7" in err
    assert "last 20 log lines of broken" in err
    tail = [line for line in err.splitlines() if line.startswith("  | ")]
    assert len(tail) == 20
    assert any(line.endswith("out 39") for line in tail)
    assert recorder.events[-1][:2] == ("failed", "broken")
    assert "Traceback" not in result.output


def test_unknown_service_did_you_mean(env):
    cli, _ = env
    result = cli("start", "svc1x")
    assert result.exit_code == 2
    assert "unknown service 'svc1x'" in result.stderr and "did you mean 'svc1'" in result.stderr


def test_no_name_with_several_services_asks_for_one(env):
    cli, _ = env
    result = cli("start")
    assert result.exit_code == 2 and "name a service or pass --all" in result.stderr


def test_logs_tail(env):
    cli, _ = env
    assert cli("start", "svc1").exit_code == 0
    result = cli("logs", "svc1", "-n", "5")
    assert result.exit_code == 0 and "hi1" in result.output


def test_status_verbose_says_why_the_backend_was_chosen(env):
    cli, _ = env
    cli("start", "svc0")
    result = cli("-v", "status", "svc0")
    assert "svc0: backend from the record of its start with manual" in result.output


def test_install_with_manual_is_refused(env):
    cli, _ = env
    result = cli("install", "svc0", "--process-manager", "manual")
    assert result.exit_code == 1 and "cannot install" in result.stderr


def test_state_dir_not_writable(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [{"name": "a", "command": ["true"]}]}))
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    result = run_cli(["-c", str(cfg), "--state-dir", str(blocker / "state"), "start", "a",
                      "--process-manager", "manual"], host=make_host(manual_plugin))
    assert result.exit_code == 2
    assert "state dir" in result.stderr and "TTS_OPS_STATE_DIR" in result.stderr


class Lifecycle:
    def __init__(self):
        self.seen = []

    @hookimpl
    def tts_ops_service_exited(self, service, exit_code, exit_signal):
        self.seen.append(("exited", service.name, exit_code, exit_signal))

    @hookimpl
    def tts_ops_service_restarted(self, service, status):
        self.seen.append(("restarted", service.name, status.restarts))


@pytest.mark.slow
def test_events_reach_plugins_for_restarts_inside_the_supervisor(tmp_path):
    import os
    import signal

    port = free_port()
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [{
        "name": "crashy", "port": port, "notify": True, "restart_delay": 0,
        "command": [*DUMMY, "--port", str(port)]}]}))
    lifecycle = Lifecycle()
    host = make_host(manual_plugin, lifecycle)
    base = ["-c", str(cfg), "--state-dir", str(tmp_path / "st")]
    try:
        assert run_cli([*base, "start"], host=host).exit_code == 0
        pid = json.loads(run_cli([*base, "status", "--json"], host=host).stdout)[0]["pid"]
        import threading

        status_file = tmp_path / "st" / "manual" / "crashy" / "status.json"
        # follow (-f) in the background: only events that happen now reach the plugins
        follower = threading.Thread(target=run_cli, args=(
            [*base, "events", "-f", "--for", "4", "--json"],), kwargs={"host": host})
        follower.start()
        from tts_ops.testing import wait_for

        # its pump threads start once it has set its cut-off: what happens next is new
        wait_for(lambda: any("(pump)" in t.name for t in threading.enumerate()),
                 message="the follower following")
        os.kill(pid, signal.SIGKILL)

        def restarted():
            row = json.loads(status_file.read_text())
            return row["ready"] and row["pid"] != pid

        wait_for(restarted, message="restart")
        follower.join(timeout=30)
        result = run_cli([*base, "events", "--json"], host=host)
        kinds = [json.loads(line)["kind"] for line in result.stdout.splitlines()]
        assert kinds[:2] == ["started", "ready"]
        assert "exited" in kinds and "restarted" in kinds
        assert ("exited", "crashy", None, 9) in lifecycle.seen
        assert ("restarted", "crashy", 1) in lifecycle.seen
        last = run_cli([*base, "events", "-n", "1", "--json"], host=host).output.splitlines()
        assert len(last) == 1
    finally:
        run_cli([*base, "stop", "--force"], host=host)


class Policy:
    """A config policy plugin that can be switched to reject every config."""

    def __init__(self):
        self.reject = False

    @hookimpl
    def tts_ops_validate_config(self, config):
        return ["policy: services must run as a service account"] if self.reject else []


def test_a_rejecting_policy_gates_start_but_never_stop_status_or_logs(tmp_path):
    port = free_port()
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [{
        "name": "svc", "port": port, "command": [*DUMMY, "--port", str(port)],
        "notify": True}]}))
    policy = Policy()
    host = make_host(manual_plugin, policy)
    base = ["-c", str(cfg), "--state-dir", str(tmp_path / "state")]

    def cli(*args):
        return run_cli([*base, *args], host=host)

    assert cli("start", "svc").exit_code == 0
    policy.reject = True  # the policy changed while the service runs
    for gated in (["start", "svc"], ["restart", "svc"], ["deploy", "svc"],
                  ["config", "validate"]):
        refused = cli(*gated)
        assert refused.exit_code == 2, (gated, refused.output)
        assert "policy: services must run as a service account" in refused.stderr
    status = cli("status", "--json")  # the hot path reads the cached config: no validators
    assert status.exit_code == 0 and json.loads(status.stdout)[0]["state"] == "running"
    edited = json.loads(cfg.read_text())
    edited["services"][0]["labels"] = {"team": "speech"}
    cfg.write_text(json.dumps(edited))  # read fresh: the validators run, and it says so
    status = cli("status", "--json")
    assert status.exit_code == 0 and json.loads(status.stdout)[0]["state"] == "running"
    assert "warning: " in status.stderr and "start, deploy and install refuse" in status.stderr
    assert cli("logs", "svc", "-n", "5").exit_code == 0
    stopped = cli("stop", "--all")
    assert stopped.exit_code == 0, stopped.output
    assert json.loads(cli("status", "--json").stdout)[0]["state"] == "stopped"
    policy.reject = False
    assert cli("start", "svc").exit_code == 0  # fixed: allowed again, nothing was cached
    assert cli("stop", "--all").exit_code == 0


def test_reading_event_history_dispatches_nothing_again(tmp_path):
    from tts_ops.runtime.events import state_after

    port = free_port()
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [{
        "name": "svc", "port": port, "command": [*DUMMY, "--port", str(port)], "notify": True}]}))
    recorder = Recorder()
    host = make_host(manual_plugin, recorder)
    base = ["-c", str(cfg), "--state-dir", str(tmp_path / "state")]
    try:
        assert run_cli([*base, "start", "svc"], host=host).exit_code == 0
        dispatched = len(recorder.events)
        assert dispatched >= 1  # the start itself told the plugins
        for args in (["events"], ["events", "-n", "3", "--json"]):
            out = run_cli([*base, *args], host=host)
            assert out.exit_code == 0 and "ready" in out.stdout
        assert len(recorder.events) == dispatched  # history printed, not fired again
    finally:
        run_cli([*base, "stop", "--all"], host=host)
    assert state_after("ready") == ("running", True)
    assert state_after("failed") == ("failed", False)


def test_json_from_start_stop_restart_and_the_table_shows_cpu_and_rss(env):
    cli, _recorder = env
    started = json.loads(cli("start", "svc0", "svc1", "--json").stdout)
    assert [(r["name"], r["state"], r["ready"]) for r in started] == [
        ("svc0", "running", True), ("svc1", "running", True)]
    assert set(started[0]) == set(json.loads(cli("status", "svc0", "--json").stdout)[0])
    restarted = json.loads(cli("restart", "svc0", "--json").stdout)
    assert restarted[0]["name"] == "svc0" and restarted[0]["pid"] != started[0]["pid"]
    table = cli("status", "svc0").stdout.splitlines()
    header = table[0].split()
    assert header[7:9] == ["CPU", "RSS"]
    row = table[1].split()
    assert row[7].endswith("%") and row[8].endswith("iB")  # measured, not "-"
    stopped = json.loads(cli("stop", "svc0", "svc1", "--json").stdout)
    assert [r["state"] for r in stopped] == ["stopped", "stopped"]


def test_config_validate_and_discovery_resolve_speak_json(env, tmp_path):
    cli, _recorder = env
    report = json.loads(cli("config", "validate", "--json").stdout)
    assert report["ok"] is True and report["services"] == 4 and report["problems"] == []
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"services": [{"name": "x", "port": 0}]}))
    out = run_cli(["-c", str(bad), "config", "validate", "--json"])
    assert out.exit_code == 2
    failed = json.loads(out.stdout)
    assert failed["ok"] is False and "services[0].port" in failed["problems"][0]
    assert cli("start", "svc2").exit_code == 0
    resolved = json.loads(cli("discovery", "resolve", "svc2", "--json").stdout)
    assert resolved["service"] == "svc2" and resolved["id"] == "svc2"
    port = json.loads(cli("status", "svc2", "--json").stdout)[0]["port"]
    assert resolved["url"] == f"http://127.0.0.1:{port}"
    assert resolved["health"] == "passing" and resolved["weight"] == 100


def _started_dummy(tmp_path, name: str) -> tuple[list[str], dict[str, str]]:
    """One dummy service, started by a real ``tts-ops`` process: (its argv prefix, env)."""
    import os
    import subprocess

    port = free_port()
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [{
        "name": name, "port": port, "command": [*DUMMY, "--port", str(port)],
        "notify": True, "process_manager": "manual"}]}))
    base = [sys.executable, "-m", "tts_ops", "-c", str(cfg), "--state-dir", str(tmp_path / "s")]
    env = {**os.environ, "TTS_OPS_PLUGINS": "manual"}
    subprocess.run([*base, "start", name], env=env, check=True, capture_output=True)
    return base, env


def test_status_watch_follows_a_stop_and_ends_cleanly_on_ctrl_c(tmp_path):
    import signal
    import subprocess

    base, env = _started_dummy(tmp_path, "watched")
    watch = subprocess.Popen([*base, "status", "--watch", "--interval", "0.2", "--json"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(watch.stdout.readline())
        assert first[0]["state"] == "running"
        subprocess.run([*base, "stop", "watched"], env=env, check=True, capture_output=True)
        while (row := json.loads(watch.stdout.readline())[0])["state"] != "stopped":
            assert row["state"] in ("running", "stopping")
    finally:
        watch.send_signal(signal.SIGINT)
        _out, err = watch.communicate(timeout=20)
        subprocess.run([*base, "stop", "--all", "--force"], env=env, capture_output=True)
    assert watch.returncode == 0 and "Traceback" not in err


def test_top_shows_the_services_acts_on_keys_and_quits(tmp_path):
    """In a real terminal (tmux): the service is listed with its state; s stops it, a starts
    it again, l follows its log until q, q quits."""
    import subprocess

    from tts_ops.testing import wait_for

    base, env = _started_dummy(tmp_path, "topsvc")
    term = Terminal(*base, "top", "--interval", "0.3")

    def row() -> str:
        return next((line for line in term.screen().splitlines() if "topsvc" in line), "")

    try:
        try:
            wait_for(lambda: "running" in row(), timeout=20, message="topsvc running")
        except AssertionError:
            raise AssertionError(term.screen()) from None
        term.tmux("send-keys", "s")
        wait_for(lambda: "stopped" in row(), timeout=30, message="s to stop it")
        term.tmux("send-keys", "a")
        wait_for(lambda: "running" in row(), timeout=30, message="a to start it")
        term.tmux("send-keys", "l")  # its log, followed; q goes back to the table
        wait_for(lambda: "topsvc: q or Ctrl-C to go back" in term.screen()
                 and "dummy ready" in term.screen(), timeout=20, message="l for its log")
        term.tmux("send-keys", "q")
        wait_for(lambda: "running" in row() and "q or Ctrl-C" not in term.screen(),
                 timeout=20, message="q back to the table")
        assert term.alive()
        term.tmux("send-keys", "q")
        wait_for(lambda: not term.alive(), timeout=10, message="q to quit")
    finally:
        term.close()
        subprocess.run([*base, "stop", "--all", "--force"], env=env, capture_output=True)


def test_sigterm_to_top_gives_the_terminal_back(tmp_path):
    """``kill`` of a running top: the terminal it put in cbreak mode is restored (echo and
    line editing back), and it says why it ended."""
    import shlex
    import signal
    import subprocess

    import psutil

    from tts_ops.testing import wait_for

    base, env = _started_dummy(tmp_path, "topterm")
    after = tmp_path / "stty.txt"
    # the shell runs top, then records the terminal's modes once top has ended
    script = (f"{shlex.join([*base, 'top', '--interval', '0.3'])}; echo exit=$?;"
              f" stty -a > {shlex.quote(str(after))}; sleep 60")
    term = Terminal("sh", "-c", script)
    try:
        wait_for(lambda: "topterm" in term.screen() and "running" in term.screen(),
                 timeout=20, message="top showing topterm")
        top = next(p for p in psutil.process_iter(["cmdline"])
                   if p.info["cmdline"] and "top" in p.info["cmdline"]
                   and str(tmp_path) in " ".join(p.info["cmdline"]))
        top.send_signal(signal.SIGTERM)
        wait_for(lambda: after.exists() and after.read_text(), timeout=20,
                 message="top to end")
        modes = after.read_text().split()
        assert "icanon" in modes and "echo" in modes, modes  # not -icanon -echo
        wait_for(lambda: "exit=143" in term.screen(), timeout=10, message="exit status")
        assert "tts-ops: terminated" in term.screen()
    finally:
        term.close()
        subprocess.run([*base, "stop", "--all", "--force"], env=env, capture_output=True)


@pytest.mark.slow
def test_deploy_on_a_terminal_shows_live_progress_and_plain_lines_elsewhere(tmp_path):
    """Under tmux (a real terminal) the phase under way and the weights are drawn live and
    cleared; the finished phases stay as the same lines a pipe gets, with no escape codes."""
    import os
    import re
    import subprocess

    from tts_ops.testing import wait_for

    port = free_port()
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [{
        "name": "livedep", "port": port, "command": [*DUMMY, "--port", "{port}"],
        "notify": True, "process_manager": "manual"}]}))
    base = [sys.executable, "-m", "tts_ops", "-c", str(cfg), "--state-dir", str(tmp_path / "s")]
    env = {**os.environ, "TTS_OPS_PLUGINS": "manual,strategies"}
    recorded = tmp_path / "terminal.out"
    recorded.touch()  # tmux starts the pipe's cat on its own time; the file must exist first
    term = Terminal(width=160, height=40, plugins="manual,strategies")
    try:
        term.tmux("pipe-pane", "-o", f"cat >> {recorded}")
        command = " ".join([*base, "deploy", "livedep", "--strategy", "blue_green"])
        term.tmux("send-keys", f"{command}; echo EXIT=$?", "Enter")
        wait_for(lambda: re.search(r"EXIT=\d", recorded.read_text(errors="replace")),
                 timeout=60, message="the deploy to finish")
        raw = recorded.read_text(errors="replace")
        plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)
        assert "EXIT=0" in plain and "livedep: deployed in" in plain, plain[-3000:]
        # the live area: a spinner frame with the phase and its running time, the weights
        assert re.search(r"[\u2800-\u28ff]\s+livedep: start_new\s+\d+\.\ds", plain), plain
        assert re.search(r"^\s*weights\s+livedep@blue=100\s*$", plain, re.M), plain
        screen = term.screen()
        assert "ok   livedep: start_new" in screen
        assert not re.search(r"[\u2800-\u28ff]", screen)  # cleared when it ended
        piped = subprocess.run([*base, "deploy", "livedep", "--strategy", "blue_green"],
                               env=env, capture_output=True, text=True)
    finally:
        term.close()
        subprocess.run([*base, "stop", "--all", "--force"], env=env, capture_output=True)
    assert piped.returncode == 0, piped.stderr
    assert "ok   livedep: start_new" in piped.stdout and "\x1b" not in piped.stdout


def test_live_progress_shows_the_canary_samples_and_error_rate():
    import io

    from rich.console import Console

    from tts_ops.cli.progress import LiveReporter

    out = io.StringIO()
    reporter = LiveReporter(Console(file=out, force_terminal=True, width=120))
    with reporter:
        reporter.event("start", id="d-1", operation="deploy", service="svc", strategy="canary",
                       environment="production", old="blue", new="green", release=None)
        reporter.event("phase_start", service="svc", phase="step_10")
        reporter.event("weights", service="svc", weights={"svc@green": 10, "svc@blue": 90})
        reporter.event("samples", service="svc", step=10, samples=40, need=50, errors=2)
        console = Console(file=io.StringIO(), width=120)
        console.print(reporter.render())
        drawn = console.file.getvalue()
    assert "svc: step_10" in drawn
    assert "svc@green=10, svc@blue=90" in drawn
    assert "canary at 10%" in drawn and "samples 40/50, errors 2, error rate 0.0500" in drawn


@pytest.mark.parametrize("command", [
    ["status", "--watch", "--interval", "0.2"],
    ["logs", "tail", "sigterm", "-f"],
    ["events", "-f"],
    ["discovery", "watch", "--from-start"],
    ["discovery", "monitor", "--interval", "0.2", "--json"],
    ["web", "--port", "0"],
])
def test_sigterm_ends_a_following_command_with_one_line(tmp_path, command):
    """``kill``, ``timeout`` or ``systemctl stop`` of a command that follows something:
    it ends as Ctrl-C would, says so in one line, and exits 143 (128 + SIGTERM)."""
    import signal
    import subprocess

    base, env = _started_dummy(tmp_path, "sigterm")
    follower = subprocess.Popen([*base, *command], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        first = follower.stdout.readline()  # it is following (its first output came)
        if command[0] == "web":  # and serving: uvicorn's own handling of SIGTERM is on
            import urllib.request

            from tts_ops.testing import wait_for

            url = first.split()[2]
            wait_for(lambda: urllib.request.urlopen(url, timeout=5).status == 200,
                     timeout=20, message="the page served")
        assert first
        follower.send_signal(signal.SIGTERM)
        _out, err = follower.communicate(timeout=20)
    finally:
        follower.kill()
        subprocess.run([*base, "stop", "--all", "--force"], env=env, capture_output=True)
    assert err.strip().splitlines() == ["tts-ops: terminated"], err
    assert follower.returncode == 143


def test_port_and_host_in_a_command_are_filled_on_a_plain_start_too(tmp_path):
    """``{port}``/``{host}`` in a command mean the service's own address before any deploy
    as after one (a deploy's slots fill in theirs)."""
    import urllib.request

    port = free_port()
    cfg = tmp_path / "tts_services.json"
    cfg.write_text(json.dumps({"services": [
        {"name": "web", "port": port, "command": [*DUMMY, "--host", "{host}", "--port", "{port}"],
         "notify": True, "health_check": "http:/health", "restart_delay": 0}]}))
    base = ["-c", str(cfg), "--state-dir", str(tmp_path / "state")]
    host = make_host(manual_plugin)
    try:
        result = run_cli([*base, "start", "web"], host=host)
        assert result.exit_code == 0, result.output
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as resp:
            assert resp.status == 200
        spec = json.loads((tmp_path / "state" / "manual" / "web" / "spec.json").read_text())
        assert "{port}" not in json.dumps(spec) and str(port) in spec["argv"]
    finally:
        run_cli([*base, "stop", "--all", "--force"], host=host)
