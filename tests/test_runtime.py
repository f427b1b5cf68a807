"""The core `Runtime` without the CLI: a program deploys through it, and it says what runs
for a service (`Service` -> `Generation` -> `Instance`) after each step."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest
from tts_ops_strategies import plugin as strategies_plugin

from tts_ops.testing import free_port, make_host
from tts_ops_manual import plugin as manual_plugin


def test_the_runtime_and_the_engine_import_no_click():
    code = ("import sys, tts_ops.runtime, tts_ops.deploy.engine, tts_ops.deploy.journal,"
            " tts_ops.web.server, tts_ops.orchestrate.runner, tts_ops.fleet.operate;"
            " print(sorted(m for m in sys.modules if m == 'click' or m.startswith('tts_ops.cli')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout


@pytest.fixture
def runtime(tmp_path):
    from tts_ops.runtime import Runtime

    cfg = tmp_path / "tts.json"
    cfg.write_text(json.dumps({"services": [{
        "name": "tts", "engine_type": "espeak", "port": free_port(), "restart_delay": 0,
        "start_timeout": 20, "process_manager": "manual",
        "deploy": {"drain_seconds": 0.5, "progress_deadline_seconds": 60}}]}))
    host = make_host(manual_plugin, strategies_plugin)
    made: list = []

    def new():  # one per "command", as the CLI makes one per invocation
        rt = Runtime(config_path=str(cfg), state_dir=str(tmp_path / "state"),
                     host_factory=lambda: host)
        made.append(rt)
        return rt

    yield new
    rt = new()
    configured = rt.services((), True)
    for svc in rt.runtime(configured):
        rt.backend("manual").stop(svc)
    rt.release_addresses(configured, None)  # the shared socket's holder, as stop lets go


@pytest.mark.slow
def test_a_program_deploys_through_the_runtime_and_every_view_speaks_of_the_service(runtime):
    from tts_ops.deploy.engine import DeployEngine, Reporter

    lines: list[str] = []
    rt = runtime()
    (svc,) = rt.services((), True)
    address = f"127.0.0.1:{svc.port}"
    backend = rt.backend("manual")
    backend.start(svc)
    before = rt.service("tts")
    assert before.address == address
    assert [(g.name, g.serving) for g in before.generations] == [("plain", True)]
    assert before.serving().instances[0].running

    for step in range(2):
        rt = runtime()
        engine = DeployEngine(rt, Reporter(True, lines.append))
        record = engine.deploy(rt.config.get("tts"), strategy="blue_green",
                               environment="production", pm=None)
        assert record["result"] == "deployed", lines
        after = runtime().service("tts")
        serving = after.serving()
        assert serving is not None and serving.name == ("green", "blue")[step]
        assert serving.release == record["release"]
        assert after.address == address  # the configured one, never a private port
        (instance,) = serving.instances
        assert instance.running and instance.id == f"tts@{serving.name}"
        assert instance.private != address and instance.private.startswith("127.0.0.1:")
        assert instance.health in ("passing", None)
        assert instance.weight == 100  # the registry's record of it carries the traffic
        other = [g for g in after.generations if not g.serving]
        assert other == []  # the old generation is gone, and nothing else runs
        # the address answers from the serving generation's instance
        with urllib.request.urlopen(f"http://{address}/health", timeout=10) as resp:
            assert resp.headers["X-TTS-Instance"] == instance.id
    events = [json.loads(line)["event"] for line in lines]
    assert events.count("result") == 2 and "platform" in events
    assert json.loads(json.dumps(after.to_json()))["address"] == address


@pytest.mark.slow
def test_the_public_names_are_real_types_to_mypy(tmp_path):
    """Through `tts_ops.plugin` a type checker sees the classes, not ``Any``."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    wrong = tmp_path / "wrong.py"
    wrong.write_text("from tts_ops.plugin import DeployContext, Service, ServiceStatus\n"
                     "x: DeployContext = 3\n"
                     "y: ServiceStatus = 'running'\n"
                     "def address(s: Service) -> int:\n"
                     "    return s.address\n")
    right = tmp_path / "right.py"
    right.write_text("from tts_ops.plugin import Service\n"
                     "def address(s: Service) -> str | None:\n"
                     "    return s.address\n")
    env = {"MYPYPATH": str(root / "core" / "src"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "mypy", "--follow-imports=silent",
                          "--no-error-summary", "--cache-dir", str(tmp_path / "cache"),
                          str(wrong), str(right)], capture_output=True, text=True, env=env,
                         timeout=300)
    errors = [ln for ln in out.stdout.splitlines() if ": error:" in ln]
    assert [ln.split(":")[1] for ln in errors] == ["2", "3", "5"], out.stdout + out.stderr
    assert all(ln.startswith(str(wrong)) for ln in errors)
