"""Hostile values against the supervisor backend: parsed back by supervisord's own parser.

supervisord runs what its program file says as root, so the renderer is checked on its
own (values the config layer would refuse are fed to it directly) and end to end (a
config that tries to inject a command, against a real supervisord: nothing runs).
"""

from __future__ import annotations

import json
import os
import shlex
import stat
import sys
import uuid

import pytest
from tts_ops_supervisor import plugin
from tts_ops_supervisor.program import render

from tts_ops.config.models import ServiceConfig
from tts_ops.errors import ConfigError
from tts_ops.testing import FORBIDDEN_TEXT, HOSTILE_TEXT, make_host, run_cli, service


def parse_back(tmp_path, text: str):
    """The program as supervisord itself reads it (``ServerOptions``, as at start-up)."""
    from supervisor.options import ServerOptions

    (tmp_path / "prog.conf").write_text(text)
    conf = tmp_path / "supervisord.conf"
    conf.write_text(f"[supervisord]\nlogfile={tmp_path}/sd.log\npidfile={tmp_path}/sd.pid\n"
                    "[include]\nfiles=prog.conf\n")
    options = ServerOptions()
    options.realize(args=["-c", str(conf)])
    [group] = options.process_group_configs
    return group.process_configs


def refused_by_supervisord_quoting(value: str) -> bool:
    """Values supervisord's environment syntax cannot carry (see program.py)."""
    return (" ;" in value or " #" in value or value[:1] in "'\"" or value[-1:] in "'\""
            or ("'" in value and '"' in value))


def test_every_hostile_value_reaches_supervisord_exactly(tmp_path):
    env = {f"V{i}": v for i, v in enumerate(HOSTILE_TEXT) if not refused_by_supervisord_quoting(v)}
    workdir = "/tmp/100%/semi;colon/$HOME/[x]/é"
    svc = service("x", command=["/bin/echo", *HOSTILE_TEXT], env=env, working_dir=workdir)
    logs = tmp_path / "100% [logs];$x"
    logs.mkdir()
    [program] = parse_back(tmp_path, render(svc, f"{logs}/a;b%(x)s%.log"))
    assert shlex.split(program.command) == ["/bin/echo", *HOSTILE_TEXT]
    assert program.environment == env
    assert program.directory == workdir
    assert program.stdout_logfile == f"{logs}/a;b%(x)s%.log"


@pytest.mark.parametrize("value", [v for v in HOSTILE_TEXT if refused_by_supervisord_quoting(v)])
def test_env_values_supervisord_would_cut_are_refused_by_name(value):
    with pytest.raises(ConfigError, match=r"^env\.A: "):
        render(service("x", env={"A": value}), "/tmp/x.log")


@pytest.mark.parametrize("value", FORBIDDEN_TEXT)
@pytest.mark.parametrize("field", ["command", "env", "working_dir", "log_file", "user"])
def test_the_renderer_refuses_control_characters_on_its_own(field, value):
    # model_construct skips validation: this is the renderer's own defence
    fields = {"command": ["/bin/echo", value]} if field == "command" else \
        {"env": {"A": value}} if field == "env" else {field: value}
    svc = ServiceConfig.model_construct(**{**ServiceConfig.model_construct(name="x")
                                           .__dict__, "name": "x", **fields})
    log_file = value if field == "log_file" else "/tmp/x.log"
    with pytest.raises(ConfigError, match="control characters"):
        render(svc, log_file)


@pytest.mark.parametrize("field", ["working_dir", "log_file", "pid_file", "command", "env"])
def test_an_injected_program_never_runs(supervisord, state_dir, tmp_path, field):
    canary = tmp_path / f"pwned-{uuid.uuid4().hex[:6]}"
    payload = f"/tmp\ncommand=/bin/sh -c 'touch {canary}'\nautostart=true\n[program:evil]"
    fields = {"command": [sys.executable, "-c", "import time; time.sleep(60)", payload]} \
        if field == "command" else {"env": {"A": payload}} if field == "env" \
        else {field: payload}
    name = f"inj-{uuid.uuid4().hex[:6]}"
    cfg = tmp_path / "tts.json"
    cfg.write_text(json.dumps({"services": [{"name": name, "notify": False,
                                             "health_check": "none", **fields}]}))
    result = run_cli(["-c", str(cfg), "--state-dir", str(state_dir), "start", name,
                      "--process-manager", "supervisor", "--supervisor-conf",
                      str(supervisord.conf)], host=make_host(plugin))
    assert result.exit_code == 2, result.output
    assert f"services[0].{field}" in result.stderr and "newline" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not list((supervisord.dir / "conf.d").glob(f"*{name}*"))
    supervisord.rpc().supervisor.reloadConfig()
    assert not canary.exists()


def test_program_file_holding_env_values_is_private(backend, supervisord):
    svc = service(f"sv-{uuid.uuid4().hex[:8]}", command=["sleep", "60"], notify=False,
                  health_check="none", env={"SECRET": "hunter2"})
    try:
        backend.install(svc)
        [path] = (supervisord.dir / "conf.d").glob(f"*{svc.name}.conf")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert "hunter2" in path.read_text()
    finally:
        backend.uninstall(svc)


def test_a_symlink_planted_as_the_log_file_is_refused(backend, supervisord, tmp_path):
    # supervisord opens the log itself, as root, following links: tts-ops checks first
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o600)
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "x.log").symlink_to(victim)
    svc = service(f"sv-{uuid.uuid4().hex[:8]}", command=["sleep", "60"], notify=False,
                  health_check="none", log_file=str(logs / "x.log"))
    with pytest.raises(ConfigError, match=rf"^{svc.name}: log_file .*x.log: is a symbolic"):
        backend.start(svc)
    assert victim.read_text() == "precious\n" and stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert not list((supervisord.dir / "conf.d").glob(f"*{svc.name}*"))


def test_the_keeper_program_reaches_supervisord_exactly(tmp_path):
    """The heartbeat keeper's program, as supervisord reads it: its argv, its log, and the
    user of tts-ops when that is not root."""
    import pwd

    from supervisor.datatypes import RestartUnconditionally
    from tts_ops_supervisor.program import render_keeper

    svc = service("x")
    argv = ["/usr/bin/python3", "-m", "tts_ops.discovery.keeper", "/tmp/st ;x/keepers/x.json"]
    [program] = parse_back(tmp_path, render_keeper(svc, argv, f"{tmp_path}/k;%.log", "nobody"))
    assert shlex.split(program.command) == argv
    assert program.stdout_logfile == f"{tmp_path}/k;%.log"
    assert program.uid == pwd.getpwnam("nobody").pw_uid
    assert program.autostart is False and program.autorestart is RestartUnconditionally
    [as_root] = parse_back(tmp_path, render_keeper(svc, argv, f"{tmp_path}/k.log", None))
    assert as_root.uid is None
