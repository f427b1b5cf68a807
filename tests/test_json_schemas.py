"""Every command with ``--json`` prints parseable JSON whose keys are the ones
docs/json.md lists for it (real commands, the manual backend, real services)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tts_ops.testing import DUMMY, free_port

ROOT = Path(__file__).resolve().parents[1]
_LINE = re.compile(r"^- `(?P<cmd>[a-z ]+) --json`: (?P<form>list of |lines of )?\{(?P<keys>.*)\}$",
                   re.M)


def documented() -> dict[str, tuple[str, set[str], set[str]]]:
    """command -> (form, required keys, optional keys); ``...`` allows any other key."""
    out = {}
    for m in _LINE.finditer((ROOT / "docs" / "json.md").read_text()):
        required, optional = set(), set()
        for part in (p.strip() for p in m["keys"].split(",")):
            if part.endswith("?"):
                optional.add(part[:-1].strip('"'))
            elif part != "...":
                required.add(part.strip('"'))
            else:
                optional.add("...")
        out[m["cmd"]] = ((m["form"] or "object").strip(), required, optional)
    return out


FLEET = {f"fleet {c}" for c in ("status", "deploy", "rollback", "restart", "start", "stop",
                                 "run")}


def test_every_command_with_json_is_documented():
    from tts_ops.cli import create_cli
    from tts_ops.cli.reference import _walk

    with_json = {" ".join(path[1:]) for path, ctx in _walk(create_cli(), ["tts-ops"], None)
                 if any("--json" in getattr(p, "opts", []) for p in ctx.command.params)}
    assert with_json - set(documented()) == set()
    assert {"deploy history"} <= set(documented())


def check(cmd: str, text: str) -> None:
    form, required, optional = documented()[cmd]
    if form == "lines of":
        items = [json.loads(line) for line in text.splitlines() if line.strip()]
        assert items, f"{cmd}: no lines"
    else:
        data = json.loads(text)
        items = data if form == "list of" else [data]
        assert isinstance(data, list if form == "list of" else dict), cmd
        assert items, f"{cmd}: an empty list proves nothing"
    for item in items:
        keys = set(item)
        assert required <= keys, (cmd, required - keys)
        if "..." not in optional:
            assert keys <= required | optional, (cmd, keys - required - optional)


@pytest.fixture
def env(tmp_path):
    ports = [free_port(), free_port()]
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [
        {"name": f"js{i}", "port": p, "command": [*DUMMY, "--port", str(p)], "notify": True,
         "process_manager": "manual", "restart_delay": 0}
        for i, p in enumerate(ports)]}))
    base = [sys.executable, "-m", "tts_ops", "-c", str(cfg), "--state-dir", str(tmp_path / "s")]
    environ = {**os.environ, "TTS_OPS_PLUGINS": "manual,strategies"}

    def run(*args: str, ok: bool = True) -> str:
        done = subprocess.run([*base, *args], env=environ, capture_output=True, text=True,
                              timeout=120)
        if ok:
            assert done.returncode == 0, (args, done.stderr)
        return done.stdout

    def popen(*args: str) -> subprocess.Popen:
        return subprocess.Popen([*base, *args], env=environ, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    try:
        yield run, popen
    finally:
        run("stop", "--all", "--force", ok=False)


@pytest.mark.slow
def test_each_command_prints_its_documented_keys(env):
    run, popen = env
    seen: set[str] = set()

    def json_of(cmd: str, *args: str) -> None:
        check(cmd, run(*cmd.split(), *args, "--json"))
        seen.add(cmd)

    json_of("start", "js0")
    json_of("status")
    json_of("restart", "js0")
    json_of("reload", "js0")
    json_of("config validate")
    json_of("config show")
    json_of("backends")
    json_of("plugins")
    json_of("discovery list")
    json_of("discovery resolve", "js0")
    json_of("discovery monitor", "--once")
    json_of("events")
    json_of("orchestrate plan")
    json_of("orchestrate start")
    json_of("orchestrate status")
    json_of("deploy run", "js1", "--strategy", "direct")
    check("deploy run", run("deploy", "js1", "--strategy", "direct", "--json"))  # short form
    json_of("releases", "js1")
    json_of("deploy history")
    json_of("rollback", "js1", "--strategy", "direct")
    json_of("logs stats")
    watch = popen("discovery", "watch", "--from-start", "--json")
    try:
        check("discovery watch", watch.stdout.readline())
        seen.add("discovery watch")
    finally:
        watch.kill()
        watch.communicate()
    monitor = popen("logs", "monitor", "--pattern", "dummy", "--duration", "4", "--json")
    run("restart", "js0")  # a new "dummy ready" line for the monitor to report
    out, err = monitor.communicate(timeout=60)
    assert monitor.returncode == 0, err
    check("logs monitor", out)
    seen.add("logs monitor")
    json_of("stop", "--all")
    # router status: plugins/haproxy/tests/test_haproxy_backends.py, with a real HAProxy;
    # the fleet's: tests/test_fleet.py, over real ssh to network namespaces
    assert set(documented()) - seen == {"router status", *FLEET}
