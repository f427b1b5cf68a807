"""systemd specifics, against the real user manager: units, escaping, restarts, limits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid

import pytest
from tts_ops_systemd import escape
from tts_ops_systemd.backend import SystemdBackend
from tts_ops_systemd.systemctl import Systemctl
from tts_ops_systemd.unit import (
    UnitPlan,
    holder_unit,
    render,
    render_holder,
    render_keeper,
    render_socket,
    socket_unit,
)

from tts_ops.backend import BackendContext, BackendUnavailable, StartFailed, State
from tts_ops.errors import ConfigError
from tts_ops.testing import free_port, free_port_run, service, wait_for


def name() -> str:
    return f"sd-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def cleanup(backend):
    made = []
    yield made.append
    for svc in made:
        backend.uninstall(svc)


def verify(text: str, tmp_path, unit: str) -> subprocess.CompletedProcess:
    path = tmp_path / unit
    path.write_text(text)
    return subprocess.run(["systemd-analyze", "verify", "--user", str(path)],
                          capture_output=True, text=True)


NASTY = ["two words", "100%", "$HOME", "${PATH}", 'q"uote', "back\\slash", "%n", "semi;colon",
         "'single'", "tab-free é ünïcode"]


@pytest.mark.parametrize("scope", ["user", "system"])
def test_rendered_units_pass_systemd_analyze_verify(user_manager, state_dir, tmp_path, scope):
    cases = [
        service(name(), engine_type="espeak", port=free_port()),
        service(name(), command=[sys.executable, "-c", "print(1)", *NASTY], notify=False,
                env={"GREETING": "hi there %h $USER \"q\""}, watchdog_sec=5, memory_max="256M",
                cpu_quota=150, tasks_max=64, working_dir=str(tmp_path), max_restarts=0),
        service(name(), engine_type="espeak", port=free_port(), instances=3),
    ]
    for svc in cases:
        plan = UnitPlan(svc, scope, True, state_dir / "logs" / f"{svc.name}.log", state_dir,
                        keeper=state_dir / "keepers" / f"{svc.name}.json")
        text = render(plan)
        # its heartbeat keeper, verified with it (Upholds= / BindsTo= name each other)
        (tmp_path / plan.keeper_unit).write_text(render_keeper(plan))
        assert f"Upholds={plan.keeper_unit}" in text.partition("[Service]")[0]
        if svc.shared_address() is not None:  # its socket unit and holder, beside it
            units = ((socket_unit(svc.name), render_socket(svc.name, *svc.shared_address())),
                     (holder_unit(svc.name), render_holder(svc.name, "/bin/sleep")))
            for unit, body in units:
                (tmp_path / unit).write_text(body)
            checked = subprocess.run(["systemd-analyze", "verify", "--user",
                                      *(str(tmp_path / unit) for unit, _ in units)],
                                     capture_output=True, text=True)
            assert checked.returncode == 0, (units, checked.stderr)
            assert "ignoring" not in checked.stderr.lower(), checked.stderr
        out = verify(text, tmp_path, plan.unit_name)
        assert out.returncode == 0, (text, out.stderr)
        kept = subprocess.run(["systemd-analyze", "verify", "--user",
                               str(tmp_path / plan.unit_name), str(tmp_path / plan.keeper_unit)],
                              capture_output=True, text=True)
        assert kept.returncode == 0 and "ignoring" not in kept.stderr.lower(), kept.stderr
        assert "Unknown" not in out.stderr and "ignoring" not in out.stderr.lower(), out.stderr
        head, _, body = text.partition("[Service]")
        assert "StartLimitBurst=" in head and "StartLimitBurst=" not in body
        assert "StandardOutput=append:" in body
        if scope == "system":
            for line in ("NoNewPrivileges=yes", "PrivateTmp=yes", "ProtectSystem=strict",
                         "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "LockPersonality=yes",
                         "ReadWritePaths="):
                assert line in body
        else:
            assert "ProtectSystem" not in body


def test_hardening_can_be_relaxed(state_dir):
    svc = service(name(), options={"systemd": {"hardening": False}})
    from tts_ops_systemd.options import options_for

    plan = UnitPlan(svc, "system", options_for(svc).hardening, state_dir / "x.log", state_dir)
    assert "ProtectSystem" not in render(plan)


def test_notify_and_exec_types(state_dir):
    ref = render(UnitPlan(service("a"), "user", True, state_dir / "a.log", state_dir))
    assert "Type=notify\nNotifyAccess=main" in ref
    other = render(UnitPlan(service("b", command=["sleep", "9"]), "user", True,
                            state_dir / "b.log", state_dir))
    assert "Type=exec" in other and "NotifyAccess" not in other


def test_escaping_rejects_control_characters():
    with pytest.raises(ConfigError, match="control characters"):
        escape.quote_arg("a\nb")
    with pytest.raises(ConfigError, match="whitespace"):
        escape.path("/tmp/a b", "working_dir")
    assert escape.quote_arg('a "b" 50% $X \\') == '"a \\"b\\" 50%% $$X \\\\"'


def test_arguments_reach_the_program_exactly(backend, cleanup, state_dir):
    printer = ("import json, os, sys, time; print(json.dumps([sys.argv[1:],"
               " os.environ['GREETING']]), flush=True); time.sleep(60)")
    svc = service(name(), command=[sys.executable, "-c", printer, *NASTY], notify=False,
                  health_check="none", start_seconds=0.5,
                  env={"GREETING": 'hi %h $USER "q" \\n'})
    cleanup(svc)
    backend.start(svc)
    line = wait_for(lambda: [ln for ln in backend.logs(svc, 20, False) if ln.startswith("[")])
    args, greeting = json.loads(line[0])
    assert args == NASTY
    assert greeting == 'hi %h $USER "q" \\n'


def test_reference_server_as_notify_unit_restarts_after_kill(backend, cleanup):
    svc = service(name(), engine_type="espeak", port=free_port(), restart_delay=0)
    cleanup(svc)
    st = backend.start(svc)
    assert st.ready and st.status_text.startswith("ready: engine espeak")
    unit = backend.plan(svc).unit_name
    assert Systemctl("user").show([unit])[unit]["ActiveState"] == "active"
    os.kill(st.pid, signal.SIGKILL)
    again = wait_for(lambda: (s := backend.status([svc])[0]).ready and s.pid != st.pid and s,
                     timeout=30, message="systemd restarting the server")
    assert again.restarts == 1 and again.state == State.RUNNING


def test_start_limit_ends_in_failed_after_max_restarts(backend, cleanup):
    svc = service(name(), command=[sys.executable, "-c", "raise SystemExit(3)"], notify=False,
                  health_check="none", start_seconds=3, max_restarts=3, restart_delay=0)
    cleanup(svc)
    with pytest.raises(StartFailed):
        backend.start(svc)
    st = wait_for(lambda: (s := backend.status([svc])[0]).state == State.FAILED and s,
                  message="failed")
    assert st.restarts == 3 and st.exit_code == 3
    assert "gave up after 3 restarts" in st.reason


def test_install_is_idempotent_shows_a_diff_and_uninstall_leaves_nothing(backend, state_dir):
    svc = service(name(), command=["sleep", "600"], notify=False, health_check="none",
                  start_seconds=0)
    ctl = Systemctl("user")
    path = ctl.unit_dir() / backend.plan(svc).unit_name
    assert backend.install(svc) is None and path.exists()
    assert backend.install(svc) is None  # unchanged: nothing to say
    changed = service(svc.name, command=["sleep", "700"], notify=False, health_check="none",
                      start_seconds=0)
    diff = backend.install(changed)
    assert '-ExecStart="sleep" "600"' in diff and '+ExecStart="sleep" "700"' in diff
    backend.start(changed)
    backend.enable(changed)
    wants = ctl.unit_dir() / "default.target.wants" / path.name
    assert wants.exists()
    backend.uninstall(changed)
    assert not path.exists() and not wants.exists()
    listed = ctl.run("list-units", "--all", "--plain", "--no-legend", path.name).stdout
    assert listed.strip() == ""
    assert backend.status([changed])[0].state == State.STOPPED


def test_status_asks_systemd_once_for_many_services(backend, cleanup, monkeypatch):
    services = [service(name(), command=["sleep", "600"], notify=False, health_check="none",
                        start_seconds=0) for _ in range(5)]
    for svc in services:
        cleanup(svc)
        backend.start(svc)
    calls = []
    original = Systemctl.run

    def counting(self, *args, **kwargs):
        calls.append(args[0])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Systemctl, "run", counting)
    rows = backend.status(services)
    assert [r.state for r in rows] == [State.RUNNING] * 5
    assert calls.count("show") == 1
    assert all(r.rss_bytes and r.rss_bytes > 0 for r in rows)


def test_resource_limits_are_applied(backend, cleanup):
    svc = service(name(), command=["sleep", "600"], notify=False, health_check="none",
                  start_seconds=0, memory_max="300M", tasks_max=50)
    cleanup(svc)
    backend.start(svc)
    unit = backend.plan(svc).unit_name
    out = Systemctl("user").run("show", unit, "-p", "MemoryMax,TasksMax").stdout
    assert f"MemoryMax={300 * 2**20}" in out and "TasksMax=50" in out


def test_instances_run_as_template_units(backend, cleanup):
    port = free_port_run(2)
    svc = service(name(), engine_type="espeak", port=port, instances=2)
    cleanup(svc)
    st = backend.start(svc)
    assert st.ready and len(st.extra["instances"]) == 2
    import urllib.request

    for p in (port, port + 1):
        with urllib.request.urlopen(f"http://127.0.0.1:{p}/ready", timeout=5) as resp:
            assert resp.status == 200
    backend.stop(svc)
    assert backend.status([svc])[0].state == State.STOPPED


def test_an_instance_that_fails_is_the_one_the_error_names(backend, cleanup):
    import socket

    port = free_port_run(2)
    svc = service(name(), engine_type="espeak", port=port, instances=2, max_restarts=0)
    cleanup(svc)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port + 1))
        taken.listen()
        with pytest.raises(StartFailed) as failed:
            backend.start(svc)
    assert f"@{port + 1}.service: exited" in str(failed.value), str(failed.value)


def test_no_manager_in_scope_is_backend_unavailable(user_manager, state_dir, monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    b = SystemdBackend(BackendContext(state_dir=state_dir, options={"scope": "user"}))
    ok, why = b.available()
    assert not ok and "XDG_RUNTIME_DIR" in why
    with pytest.raises(BackendUnavailable, match="no systemd reachable"):
        b.start(service(name(), command=["sleep", "1"]))


def test_cli_exit_3_names_what_was_tried(user_manager, tmp_path):
    from tts_ops_systemd import plugin

    from tts_ops.testing import make_host, run_cli

    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [{"name": "x", "command": ["sleep", "1"]}]}))
    result = run_cli(["-c", str(cfg), "--state-dir", str(tmp_path / "st"), "start", "x",
                      "--process-manager", "systemd", "--scope", "system"],
                     host=make_host(plugin))
    assert result.exit_code == 3
    assert "no systemd reachable: system scope: PID 1 is" in result.stderr
    assert "--scope user" in result.stderr


def test_user_option_needs_system_scope(state_dir):
    svc = service(name(), command=["sleep", "1"], user="nobody")
    with pytest.raises(ConfigError, match="needs --scope system"):
        render(UnitPlan(svc, "user", True, state_dir / "x.log", state_dir))


def test_options_section_is_validated(tmp_path):
    from tts_ops_systemd import plugin

    from tts_ops.testing import make_host, run_cli

    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [{"name": "x", "options": {
        "systemd": {"scope": "galaxy", "hardnening": True}}}]}))
    result = run_cli(["config", "validate", "-c", str(cfg)], host=make_host(plugin))
    assert result.exit_code == 2
    assert "services[0].options.systemd.hardnening: unknown key; did you mean 'hardening'?" \
        in result.stderr
    assert ("services[0].options.systemd.scope: must be one of 'auto', 'user' or 'system'"
            " (got 'galaxy')") in result.stderr


def test_dead_journal_sockets_do_not_count_as_a_journal(tmp_path):
    """Leftover socket files of a journald that died must not send output to nowhere."""
    import socket as socketmod

    from tts_ops_systemd.systemctl import journal_running

    path = str(tmp_path / "stdout")
    listener = socketmod.socket(socketmod.AF_UNIX, socketmod.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    assert journal_running(path) is True  # someone listens: a journal
    listener.close()  # the file stays, nobody listens: like a journald that died
    assert journal_running(path) is False
    assert journal_running(str(tmp_path / "missing")) is False


def test_every_hostile_value_reaches_the_program_through_a_real_unit(backend, cleanup, tmp_path):
    from tts_ops.testing import HOSTILE_TEXT

    printer = ("import json, os, sys, time; print(json.dumps([sys.argv[1:], {k: v for k, v in"
               " os.environ.items() if k.startswith('V')}]), flush=True); time.sleep(60)")
    env = {f"V{i}": v for i, v in enumerate(HOSTILE_TEXT)}
    svc = service(name(), command=[sys.executable, "-c", printer, *HOSTILE_TEXT], notify=False,
                  health_check="none", start_seconds=0.5, env=env)
    cleanup(svc)
    plan = UnitPlan(svc, "user", True, tmp_path / "x.log", tmp_path)
    out = verify(render(plan), tmp_path, plan.unit_name)
    assert out.returncode == 0, out.stderr
    backend.start(svc)
    line = wait_for(lambda: [ln for ln in backend.logs(svc, 20, False) if ln.startswith("[")])
    args, seen = json.loads(line[0])
    assert args == HOSTILE_TEXT
    assert seen == env
    from tts_ops_systemd.systemctl import Systemctl

    unit_file = Systemctl("user").unit_dir() / plan.unit_name
    assert os.stat(unit_file).st_mode & 0o777 == 0o600  # it holds the env values


@pytest.mark.parametrize("field", ["command", "env", "working_dir", "log_file", "user"])
def test_the_unit_renderer_refuses_control_characters_on_its_own(state_dir, field):
    from tts_ops.config.models import ServiceConfig
    from tts_ops.testing import FORBIDDEN_TEXT

    for value in FORBIDDEN_TEXT:
        fields = {"command": ["/bin/echo", value]} if field == "command" else \
            {"env": {"A": value}} if field == "env" else {field: value}
        # model_construct skips validation: this is the renderer's own defence
        base = ServiceConfig.model_construct(name="x").__dict__
        svc = ServiceConfig.model_construct(**{**base, "notify": False, **fields})
        from pathlib import Path

        log = Path(value) if field == "log_file" else state_dir / "x.log"
        with pytest.raises(ConfigError, match="control characters"):
            render(UnitPlan(svc, "system", True, log, state_dir))


@pytest.mark.parametrize(("field", "value"), [("restart_delay", float("nan")),
                                              ("stop_timeout", float("inf")),
                                              ("watchdog_sec", 1e300)])
def test_the_unit_renderer_refuses_impossible_times_on_its_own(state_dir, field, value):
    from tts_ops.config.models import ServiceConfig

    base = ServiceConfig.model_construct(name="x").__dict__
    svc = ServiceConfig.model_construct(**{**base, field: value})
    with pytest.raises(ConfigError, match=f"^{field}: must be 0-"):
        render(UnitPlan(svc, "user", True, state_dir / "x.log", state_dir))


def test_a_symlink_planted_as_the_log_file_is_refused(backend, tmp_path):
    # systemd opens StandardOutput=append: itself, following links: tts-ops checks first
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "x.log").symlink_to(victim)
    svc = service(name(), command=["sleep", "60"], notify=False, health_check="none",
                  log_file=str(tmp_path / "x.log"))
    with pytest.raises(ConfigError, match=rf"^{svc.name}: log_file .*x.log: is a symbolic"):
        backend.start(svc)
    assert victim.read_text() == "precious\n"
    from tts_ops_systemd.systemctl import Systemctl

    assert not (Systemctl("user").unit_dir() / f"tts-ops-{svc.name}.service").exists()


def test_enable_and_uninstall_follow_the_serving_generation(user_manager, tmp_path):
    from tts_ops_strategies import plugin as strategies_plugin
    from tts_ops_systemd import plugin as systemd_plugin

    from tts_ops.testing import make_host, run_cli

    base = name()
    port = free_port_run(2)  # blue on port, green on port + 1
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [{
        "name": base, "port": port, "notify": False, "health_check": "tcp",
        "command": [sys.executable, "-m", "tts_ops.testing.dummy_service", "--port", "{port}"],
        "deploy": {"drain_seconds": 0.1}}]}))
    host = make_host(systemd_plugin, strategies_plugin)
    cli = ["-c", str(cfg), "--state-dir", str(tmp_path / "state")]
    ctl = Systemctl("user")

    def enabled(unit: str) -> str:
        return ctl.run("is-enabled", unit, check=False).stdout.strip()

    try:
        for _ in range(2):  # blue, then green: the serving unit is tts-ops-NAME-green
            out = run_cli([*cli, "deploy", "--strategy", "blue_green", "--process-manager",
                           "systemd", "--skip-tests"], host=host)
            assert out.exit_code == 0, out.output
        # no --process-manager: the backend the service was deployed with
        out = run_cli([*cli, "enable", base], host=host)
        assert out.exit_code == 0, out.output
        assert enabled(f"tts-ops-{base}-green.service") == "enabled"
        assert enabled(f"tts-ops-{base}-blue.service") != "enabled"
        out = run_cli([*cli, "uninstall", base], host=host)
        assert out.exit_code == 0, out.output
        units = [p.name for p in ctl.unit_dir().glob(f"tts-ops-{base}*")]
        assert units == []
        assert json.loads(run_cli([*cli, "status", "--json"], host=host).stdout)[0]["state"] \
            == "stopped"
    finally:
        run_cli([*cli, "uninstall", base], host=host)


@pytest.mark.slow
def test_a_service_keeps_its_discovery_record_past_its_ttl(user_manager, tmp_path):
    # systemd sends no heartbeats: the keeper unit beside the service does
    from tts_ops.testing.heartbeats import check_record_outlives_ttl

    check_record_outlives_ttl(tmp_path, "systemd", ["--scope", "user"])


def test_a_keeper_that_cannot_run_shows_in_status(user_manager, tmp_path):
    """The record dropped out of discovery while status said running and ready: a keeper
    restarting or failed is on the service's row."""
    import subprocess
    import sys

    from tts_ops.testing import DUMMY, free_port, wait_for

    port = free_port()
    svc = f"kp{uuid.uuid4().hex[:6]}"
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"discovery": {"ttl": 3}, "services": [{
        "name": svc, "port": port, "notify": True, "process_manager": "systemd",
        "command": [*DUMMY, "--port", str(port)]}]}))
    base = [sys.executable, "-m", "tts_ops", "-c", str(cfg), "--state-dir",
            str(tmp_path / "s")]

    def row() -> dict:
        out = subprocess.run([*base, "status", "--json"], capture_output=True, text=True,
                             timeout=60)
        return json.loads(out.stdout)[0]

    try:
        started = subprocess.run([*base, "start", "--scope", "user"], capture_output=True,
                                 text=True, timeout=120)
        assert started.returncode == 0, started.stderr
        wait_for(lambda: row()["extra"].get("keeper", "").startswith("active"), timeout=20,
                 message="its keeper running")
        (tmp_path / "s" / "keepers" / f"{svc}.json").write_text("{garbage")
        subprocess.run(["systemctl", "--user", "kill", "-s", "KILL",
                        f"tts-ops_beat-{svc}.service"], check=True)
        wait_for(lambda: row()["extra"].get("degraded"), timeout=30,
                 message="the keeper's trouble on the row")
        assert row()["state"] == "running"
        table = subprocess.run([*base, "status"], capture_output=True, text=True,
                               timeout=60).stdout
        assert f"its discovery keeper tts-ops_beat-{svc}.service is" in table, table
    finally:
        subprocess.run([*base, "stop", "--all"], capture_output=True, timeout=120)
