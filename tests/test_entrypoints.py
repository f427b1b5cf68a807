"""Entry-point discovery end to end: real distributions installed into a temporary venv.

The venv sees the development environment's packages (tts-ops, tts-ops-manual, ...)
through a ``site.addsitedir`` line, and gets two plugin distributions of its own: the
documented example plugin and a deliberately broken one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from tts_ops.testing import DUMMY, free_port

ROOT = Path(__file__).resolve().parents[1]


def _site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def _dev_venv(base: Path) -> Path:
    """A venv that sees the development environment's packages (a site dir line)."""
    venv = base / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    dev_site = sysconfig.get_paths()["purelib"]
    (_site_packages(venv) / "dev_env.pth").write_text(
        f"import site; site.addsitedir({dev_site!r})\n")
    return venv


def _pip_install(venv: Path, *projects: Path) -> None:
    for project in projects:
        subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                        "install", "-q", "--no-deps", "--no-build-isolation", str(project)],
                       check=True)


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("venv")
    venv = _dev_venv(base)
    broken = base / "broken"
    (broken / "src" / "tts_ops_broken").mkdir(parents=True)
    (broken / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["hatchling"]
        build-backend = "hatchling.build"
        [project]
        name = "tts-ops-broken"
        version = "6.6.6"
        [project.entry-points.tts_ops]
        broken = "tts_ops_broken"
        [tool.hatch.build.targets.wheel]
        packages = ["src/tts_ops_broken"]
    """))
    (broken / "src" / "tts_ops_broken" / "__init__.py").write_text(
        "raise ImportError('needs libfrobnicate, which is not installed')\n")
    _pip_install(venv, ROOT / "docs" / "plugins" / "example", broken)
    return venv


def tts_ops(venv: Path, *args: str, env: dict | None = None, cwd: Path | None = None):
    full_env = {k: v for k, v in os.environ.items() if k != "TTS_OPS_PLUGINS"}
    full_env.update(env or {})
    return subprocess.run([str(venv / "bin" / "python"), "-m", "tts_ops", *args],
                          capture_output=True, text=True, env=full_env, cwd=cwd, timeout=60)


@pytest.mark.slow
def test_installed_plugin_is_listed(venv):
    out = tts_ops(venv, "plugins", "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    team = rows["team_label"]
    assert team["distribution"] == "tts-ops-team-label" and team["version"] == "0.1.0"
    assert team["hooks"] == ["tts_ops_service_ready", "tts_ops_validate_config"]
    assert rows["manual"]["registers"] == {"backend": ["manual"]}
    assert "broken" not in rows


def test_broken_plugin_warns_by_name_and_status_still_works(venv, tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [{"name": "a", "labels": {"team": "voice"},
                                             "command": ["sleep", "30"]}]}))
    out = tts_ops(venv, "-c", str(cfg), "--state-dir", str(tmp_path / "st"), "status")
    assert out.returncode == 0, out.stderr
    warnings = [ln for ln in out.stderr.splitlines() if "warning" in ln]
    assert len(warnings) == 1
    assert "plugin 'broken' (tts-ops-broken 6.6.6) is disabled" in warnings[0]
    assert "needs libfrobnicate" in warnings[0]
    assert "pip uninstall tts-ops-broken" in warnings[0]
    assert "a " in out.stdout and "stopped" in out.stdout


def test_load_list_limits_entry_points(venv):
    out = tts_ops(venv, "plugins", "--json", env={"TTS_OPS_PLUGINS": "team_label"})
    core = {"tts_ops.builtins", "tts_ops.discovery.autoregister"}  # always: part of the core
    names = {r["name"] for r in json.loads(out.stdout)}
    assert names == {"team_label", *core}
    assert "broken" not in out.stderr
    out = tts_ops(venv, "plugins", "--json", env={"TTS_OPS_PLUGINS": ""})
    rows = json.loads(out.stdout)
    assert {r["name"] for r in rows} == core
    assert {r["distribution"] for r in rows} == {"tts-ops"}


def test_plugin_validation_and_events_take_part(venv, tmp_path):
    port = free_port()
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [{"name": "nolabel", "command": ["sleep", "1"]}]}))
    out = tts_ops(venv, "config", "validate", "-c", str(cfg))
    assert out.returncode == 2
    assert "services[0].labels: needs a 'team' label" in out.stderr
    cfg.write_text(json.dumps({"services": [{
        "name": "labelled", "labels": {"team": "voice"}, "port": port, "notify": True,
        "command": [*DUMMY, "--port", str(port)]}]}))
    log = tmp_path / "ready.jsonl"
    env = {"TEAM_LABEL_LOG": str(log)}
    args = ["-c", str(cfg), "--state-dir", str(tmp_path / "st")]
    try:
        out = tts_ops(venv, *args, "start", env=env)
        assert out.returncode == 0, out.stderr
        (record,) = [json.loads(line) for line in log.read_text().splitlines()]
        assert record["service"] == "labelled" and record["team"] == "voice"
        assert record["pid"] > 0
    finally:
        tts_ops(venv, *args, "stop", "--force", env=env)


def test_the_broken_plugin_fails_a_command_that_needs_it(venv, tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [{"name": "a", "labels": {"team": "voice"}}]}))
    out = tts_ops(venv, "-c", str(cfg), "--state-dir", str(tmp_path), "status",
                  "--process-manager", "broken")
    assert out.returncode == 3
    assert "no backend named 'broken'" in out.stderr
    assert "plugin 'broken' (tts-ops-broken 6.6.6) is disabled" in out.stderr


def test_a_minimal_install_fails_at_once_and_its_hints_work_from_a_checkout(tmp_path):
    """core and the manual plugin only: no tts-server, no strategies."""
    venv = tmp_path / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # plain paths (no .pth processing): the dependencies, core and the manual plugin only
    dev_site = sysconfig.get_paths()["purelib"]
    (_site_packages(venv) / "minimal.pth").write_text(
        f"{dev_site}\n{ROOT / 'core' / 'src'}\n{ROOT / 'plugins' / 'manual' / 'src'}\n")
    cfg = tmp_path / "c.json"
    # a start that waited for readiness would take 600 s: the 60 s below would expire
    cfg.write_text(json.dumps({"services": [{"name": "tts", "port": free_port(),
                                             "start_timeout": 600}]}))
    env = {**os.environ, "TTS_OPS_PLUGINS": "manual"}
    base = [str(venv / "bin" / "python"), "-m", "tts_ops", "-c", str(cfg), "--state-dir",
            str(tmp_path / "state")]
    out = subprocess.run([*base, "start", "tts"], capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.returncode == 1, out.stderr
    assert "the reference TTS server is not installed (the distribution tts-server);" \
        f" pip install {ROOT / 'service'}" in out.stderr
    out = subprocess.run([*base, "deploy", "--strategy", "canary"], capture_output=True,
                         text=True, env=env, timeout=60)
    assert out.returncode == 3
    assert f"pip install {ROOT / 'plugins' / 'strategies'}" in out.stderr
    # and the hint works as printed
    hint = out.stderr.split("install it with: ", 1)[1].split()
    assert hint[:2] == ["pip", "install"] and (Path(hint[2]) / "pyproject.toml").is_file()


def _dist(base: Path, dist: str, module: str, code: str) -> Path:
    project = base / dist
    (project / "src" / module).mkdir(parents=True)
    (project / "pyproject.toml").write_text(textwrap.dedent(f"""
        [build-system]
        requires = ["hatchling"]
        build-backend = "hatchling.build"
        [project]
        name = "{dist}"
        version = "1.0.0"
        [project.entry-points.tts_ops]
        {module.removeprefix("tts_ops_")} = "{module}"
        [tool.hatch.build.targets.wheel]
        packages = ["src/{module}"]
    """))
    (project / "src" / module / "__init__.py").write_text(textwrap.dedent(code))
    return project


@pytest.fixture(scope="module")
def venv_with_faulty_plugins(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("faulty")
    venv = _dev_venv(base)
    misspelled = _dist(base, "tts-ops-misspelled", "tts_ops_misspelled", """
        from tts_ops import hookimpl

        @hookimpl
        def tts_ops_servce_ready(service):  # a typo: no such hook
            pass
    """)
    strict = _dist(base, "tts-ops-strict", "tts_ops_strict", """
        from tts_ops import hookimpl

        @hookimpl
        def tts_ops_validate_config(config):
            raise RuntimeError("the policy server is unreachable")
    """)
    _pip_install(venv, misspelled, strict)
    return venv


@pytest.mark.slow
def test_a_misspelled_hook_and_a_raising_validator_leave_every_command_working(
        venv_with_faulty_plugins, tmp_path):
    venv = venv_with_faulty_plugins
    env = {"TTS_OPS_PLUGINS": "misspelled,strict,manual"}
    listed = tts_ops(venv, "plugins", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    names = {r["name"] for r in json.loads(listed.stdout)}
    assert "strict" in names and "misspelled" not in names
    warnings = [ln for ln in listed.stderr.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and "tts_ops_servce_ready" in warnings[0]
    assert "pip uninstall tts-ops-misspelled" in warnings[0]
    assert "Traceback" not in listed.stderr

    port = free_port()
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [{"name": "a", "port": port, "notify": True,
                                             "command": [*DUMMY, "--port", str(port)]}]}))
    args = ["-c", str(cfg), "--state-dir", str(tmp_path / "st")]
    for _ in range(2):  # fails closed on every run: a refused config is never cached
        refused = tts_ops(venv, *args, "config", "validate", env=env)
        assert refused.returncode == 2, refused.stderr
        assert "plugin 'strict': its tts_ops_validate_config raised RuntimeError: the policy" \
            " server is unreachable" in refused.stderr
        start = tts_ops(venv, *args, "start", "a", env=env)
        assert start.returncode == 2 and "Traceback" not in start.stderr
    status = tts_ops(venv, *args, "status", env=env)
    assert status.returncode == 0 and "Traceback" not in status.stderr
    assert tts_ops(venv, *args, "stop", "--all", env=env).returncode == 0
