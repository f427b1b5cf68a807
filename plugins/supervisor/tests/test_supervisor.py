"""supervisor specifics, against a real supervisord: quoting, reloads, FATAL, errors."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import uuid

import pytest
from tts_ops_supervisor import plugin
from tts_ops_supervisor.backend import SupervisorBackend
from tts_ops_supervisor.conf import read_conf
from tts_ops_supervisor.program import render
from tts_ops_supervisor.rpc import Client

from tts_ops.backend import BackendContext, BackendUnavailable, StartFailed, State
from tts_ops.errors import ConfigError
from tts_ops.testing import free_port, make_host, run_cli, service, wait_for

pytestmark = pytest.mark.slow


def name() -> str:
    return f"sv-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def cleanup(backend):
    made = []
    yield made.append
    for svc in made:
        backend.uninstall(svc)


def rpc(supervisord) -> Client:
    return Client(read_conf(supervisord.conf))


NASTY = ["two words", "100%", "$HOME", 'q"uote', "back\\slash", "semi;colon", "'single'", "é"]


def test_arguments_and_environment_reach_the_program_exactly(backend, cleanup):
    printer = ("import json, os, sys, time; print(json.dumps([sys.argv[1:], os.environ['A'],"
               " os.environ['B']]), flush=True); time.sleep(60)")
    svc = service(name(), command=[sys.executable, "-c", printer, *NASTY], notify=False,
                  health_check="none", env={"A": 'say "hi", 100%', "B": "it's, $fine"})
    cleanup(svc)
    backend.start(svc)
    line = wait_for(lambda: [ln for ln in backend.logs(svc, 20, False) if ln.startswith("[")])
    assert json.loads(line[0]) == [NASTY, 'say "hi", 100%', "it's, $fine"]


def test_a_value_with_both_quotes_is_refused():
    svc = service("x", env={"A": "both ' and \" inside"})
    with pytest.raises(ConfigError, match=r"env\.A: supervisor cannot represent"):
        render(svc, "/tmp/x.log")


def test_startsecs_is_never_zero_and_a_crash_ends_in_fatal(backend, cleanup, supervisord):
    svc = service(name(), command=[sys.executable, "-c", "raise SystemExit(1)"], notify=False,
                  health_check="none", start_seconds=0, max_restarts=2)
    cleanup(svc)
    assert "startsecs=2" in render(svc, "/tmp/x.log")
    with pytest.raises(StartFailed):
        backend.start(svc)
    wait_for(lambda: backend.status([svc])[0].state == State.FAILED, timeout=20, message="FATAL")
    spawned = backend.status([svc])[0].restarts
    time.sleep(2)
    # FATAL means supervisord stopped trying: no respawn without limit
    assert backend.status([svc])[0].restarts == spawned == 2
    info = rpc(supervisord).call("supervisor.getProcessInfo", f"tts-ops-{svc.name}")
    assert info["statename"] == "FATAL"


def test_reference_server_waits_for_ready_and_survives_kill_9(backend, cleanup):
    port = free_port()
    svc = service(name(), engine_type="espeak", port=port, restart_delay=0)
    cleanup(svc)
    st = backend.start(svc)
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as resp:
        assert resp.status == 200  # start returned only once /ready said so
    os.kill(st.pid, signal.SIGKILL)
    again = wait_for(lambda: (s := backend.status([svc])[0]).pid not in (None, st.pid)
                     and s.state == State.RUNNING and s, timeout=20, message="restart")
    assert again.restarts == 1


def test_changed_program_is_readded_and_unchanged_ones_keep_running(backend, cleanup):
    a = service(name(), command=["sleep", "600"], notify=False, health_check="none")
    b = service(name(), command=["sleep", "600"], notify=False, health_check="none")
    cleanup(a)
    cleanup(b)
    pid_a, pid_b = backend.start(a).pid, backend.start(b).pid
    changed = service(a.name, command=["sleep", "601"], notify=False, health_check="none")
    diff = backend.install(changed)
    assert '-command=sleep 600' in diff and '+command=sleep 601' in diff
    new_a = backend.status([changed])[0]
    assert new_a.state == State.RUNNING and new_a.pid != pid_a  # re-added and running again
    assert backend.status([b])[0].pid == pid_b  # untouched
    assert backend.install(changed) is None  # idempotent


def test_uninstall_leaves_supervisord_clean(backend, supervisord):
    svc = service(name(), command=["sleep", "600"], notify=False, health_check="none")
    backend.start(svc)
    path = supervisord.dir / "conf.d" / f"tts-ops-{svc.name}.conf"
    assert path.exists()
    backend.uninstall(svc)
    assert not path.exists()
    groups = {p["group"] for p in rpc(supervisord).call("supervisor.getAllProcessInfo")}
    assert f"tts-ops-{svc.name}" not in groups
    added, changed, removed = rpc(supervisord).call("supervisor.reloadConfig")[0]
    assert f"tts-ops-{svc.name}" not in added + changed + removed


def test_enable_sets_autostart(backend, cleanup, supervisord):
    svc = service(name(), command=["sleep", "600"], notify=False, health_check="none")
    cleanup(svc)
    backend.enable(svc)
    path = supervisord.dir / "conf.d" / f"tts-ops-{svc.name}.conf"
    assert "autostart=true" in path.read_text()
    backend.disable(svc)
    assert "autostart=false" in path.read_text()


def test_status_is_one_round_trip(backend, cleanup, monkeypatch):
    services = [service(name(), command=["sleep", "600"], notify=False, health_check="none")
                for _ in range(4)]
    for svc in services:
        cleanup(svc)
    # side by side: each start waits out supervisord's startsecs (4 x 2 s one by one)
    starts = [threading.Thread(target=backend.start, args=(svc,)) for svc in services]
    for t in starts:
        t.start()
    for t in starts:
        t.join()
    calls = []
    original = Client.call

    def counting(self, method, *args):
        calls.append(method)
        return original(self, method, *args)

    monkeypatch.setattr(Client, "call", counting)
    rows = backend.status(services)
    assert [r.state for r in rows] == [State.RUNNING] * 4
    assert calls == ["system.multicall"]


def test_supervisord_not_running_exits_3_naming_url_and_fix(tmp_path, state_dir):
    from tts_ops_supervisor.daemon import PrivateSupervisord

    dead = PrivateSupervisord()  # configured, never started
    try:
        cfg = tmp_path / "c.json"
        cfg.write_text(json.dumps({"services": [{"name": "x", "command": ["sleep", "1"]}]}))
        result = run_cli(["-c", str(cfg), "--state-dir", str(state_dir), "start", "x",
                          "--process-manager", "supervisor", "--supervisor-conf",
                          str(dead.conf)], host=make_host(plugin))
        assert result.exit_code == 3
        assert f"supervisord at unix://{dead.sock} does not answer" in result.stderr
        assert f"start it with: supervisord -c {dead.conf}" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    finally:
        dead.stop()


def test_credentials_are_used_and_never_printed(state_dir, monkeypatch):
    from tts_ops_supervisor.daemon import PrivateSupervisord

    with PrivateSupervisord(username="ops", password="s3cret-pw") as daemon:
        good = SupervisorBackend(BackendContext(state_dir=state_dir,
                                                options={"conf": str(daemon.conf)}))
        ok, why = good.available()
        assert ok, why
        monkeypatch.setenv("TTS_OPS_SUPERVISOR_PASSWORD", "wrong-pw")
        bad = SupervisorBackend(BackendContext(state_dir=state_dir,
                                               options={"conf": str(daemon.conf)}))
        ok, why = bad.available()
        assert not ok and "authentication failed" in why
        assert "s3cret-pw" not in why and "wrong-pw" not in why
        assert "s3cret-pw" not in repr(read_conf(daemon.conf))
        with pytest.raises(BackendUnavailable) as info:
            bad.status([service("x")])
        assert "wrong-pw" not in str(info.value)


def test_fault_is_one_line(backend, cleanup):
    svc = service(name(), command=["sleep", "600"], notify=False, health_check="none")
    cleanup(svc)
    client = backend.client(svc)
    from tts_ops_supervisor.rpc import RpcFault

    with pytest.raises(RpcFault) as info:
        client.call("supervisor.startProcess", "no-such-program", False)
    assert str(info.value) == (
        "supervisord refused supervisor.startProcess: BAD_NAME (no-such-program)")


@pytest.mark.parametrize("command", [["logs", "x"], ["orchestrate", "status"], ["status"],
                                     ["stop", "x"]])
def test_every_command_with_supervisord_down_is_one_line_exit_3(tmp_path, state_dir, command):
    from tts_ops_strategies import plugin as strategies
    from tts_ops_supervisor.daemon import PrivateSupervisord

    dead = PrivateSupervisord()  # configured, never started
    try:
        cfg = tmp_path / "c.json"
        cfg.write_text(json.dumps({"services": [{"name": "x", "command": ["sleep", "1"]}]}))
        result = run_cli(["-c", str(cfg), "--state-dir", str(state_dir), *command,
                          "--process-manager", "supervisor", "--supervisor-conf",
                          str(dead.conf)], host=make_host(plugin, strategies))
        assert result.exit_code == 3, result.output
        assert "Traceback" not in result.output
        assert "does not answer" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    finally:
        dead.stop()


def test_a_service_keeps_its_discovery_record_past_its_ttl(supervisord, tmp_path):
    # supervisord sends no heartbeats: the keeper program beside the service does
    from tts_ops.testing.heartbeats import check_record_outlives_ttl

    check_record_outlives_ttl(tmp_path, "supervisor", ["--supervisor-conf", str(supervisord.conf)])


def test_deploy_prechecks_reach_the_supervisord_of_options_supervisor_conf(supervisord,
                                                                           tmp_path):
    """The pre-checks asked the default supervisord (/var/run/supervisor.sock) and refused a
    deploy whose service names its own in options.supervisor.conf."""
    from tts_ops_strategies import plugin as strategies

    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [{
        "name": name(), "command": [sys.executable, "-c", "import time; time.sleep(60)"],
        "notify": False, "health_check": "none", "process_manager": "supervisor",
        "options": {"supervisor": {"conf": str(supervisord.conf)}}}]}))
    env = {k: v for k, v in os.environ.items() if k != "TTS_OPS_SUPERVISOR_CONF"}
    result = run_cli(["-c", str(cfg), "--state-dir", str(tmp_path / "s"), "deploy",
                      "--dry-run"], host=make_host(plugin, strategies),
                     env={**env, "TTS_OPS_SUPERVISOR_CONF": ""})
    assert result.exit_code == 0, result.output
    assert "not reachable" not in result.output


def test_a_service_stopped_behind_its_socket_holder_leaves_passing(supervisord, tmp_path):
    """socket: inherit keeps the address open while the service is down, so a tcp check
    passed and the record stayed passing: the keeper asks supervisord too."""
    from tts_ops_supervisor.program import program_name

    from tts_ops.config.models import ServiceConfig

    port = free_port()
    svc_name = name()
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"discovery": {"ttl": 3}, "services": [{
        "name": svc_name, "engine_type": "espeak", "port": port, "workers": 1,
        "health_check": "tcp", "process_manager": "supervisor", "unhealthy_threshold": 2}]}))
    base = [sys.executable, "-m", "tts_ops", "-c", str(cfg), "--state-dir",
            str(tmp_path / "s")]
    flags = ["--supervisor-conf", str(supervisord.conf)]

    def health() -> str | None:
        out = subprocess.run([*base, "discovery", "list", "--all", "--json"],
                             capture_output=True, text=True, timeout=60).stdout
        rows = {r["service"]: r["effective_health"] for r in json.loads(out or "[]")}
        return rows.get(svc_name)

    import subprocess

    try:
        started = subprocess.run([*base, "start", *flags], capture_output=True, text=True,
                                 timeout=120)
        assert started.returncode == 0, started.stderr
        wait_for(lambda: health() == "passing", timeout=20, message="passing")
        import time

        until = time.monotonic() + 3  # past unhealthy_threshold intervals: the keeper's
        while time.monotonic() < until:  # question to supervisord says it runs
            assert health() == "passing"
        program = program_name(ServiceConfig(name=svc_name))
        rpc(supervisord).call("supervisor.stopProcess", program)  # behind tts-ops' back
        import socket as sockets

        with sockets.create_connection(("127.0.0.1", port), timeout=5):
            pass  # the holder still accepts: a tcp check alone passes
        wait_for(lambda: health() not in ("passing", None), timeout=20,
                 message="not passing once its process is stopped")
    finally:
        subprocess.run([*base, "stop", "--all", *flags], capture_output=True, timeout=120)


def test_a_keeper_that_cannot_run_shows_in_status(supervisord, tmp_path):
    """The record dropped out of discovery while status said running and ready: a keeper
    in BACKOFF or FATAL is on the service's row."""
    import subprocess

    from tts_ops_supervisor.program import keeper_name

    from tts_ops.config.models import ServiceConfig

    svc_name = name()
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"discovery": {"ttl": 3}, "services": [{
        "name": svc_name, "command": [sys.executable, "-c", "import time; time.sleep(600)"],
        "notify": False, "health_check": "none", "process_manager": "supervisor"}]}))
    base = [sys.executable, "-m", "tts_ops", "-c", str(cfg), "--state-dir",
            str(tmp_path / "s")]
    flags = ["--supervisor-conf", str(supervisord.conf)]
    try:
        started = subprocess.run([*base, "start", *flags], capture_output=True, text=True,
                                 timeout=120)
        assert started.returncode == 0, started.stderr
        (tmp_path / "s" / "keepers" / f"{svc_name}.json").write_text("{garbage")
        keeper = keeper_name(ServiceConfig(name=svc_name))
        rpc(supervisord).call("supervisor.signalProcess", f"{keeper}:{keeper}", "KILL")

        def row() -> dict:
            out = subprocess.run([*base, "status", "--json", *flags], capture_output=True,
                                 text=True, timeout=60)
            return json.loads(out.stdout)[0]

        wait_for(lambda: row()["extra"].get("keeper") in ("BACKOFF", "FATAL"), timeout=30,
                 message="the keeper's trouble on the row")
        table = subprocess.run([*base, "status", *flags], capture_output=True, text=True,
                               timeout=60).stdout
        assert "its discovery keeper is" in table and "not kept alive" in table, table
        assert row()["state"] == "running"
    finally:
        subprocess.run([*base, "stop", "--all", *flags], capture_output=True, timeout=120)
