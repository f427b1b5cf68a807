"""The CLI contract: help, version, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tts_ops.cli import create_cli
from tts_ops.testing import make_host, run_cli

COMMANDS = ["plugins", "backends", "config", "config validate", "config show", "start", "stop",
            "restart", "status", "install", "uninstall", "enable", "disable", "logs"]


def test_version():
    from tts_ops import __version__

    result = run_cli(["--version"])
    assert result.output.strip() == f"tts-ops, version {__version__}"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = run_cli([*command.split(), "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output
    cli = create_cli()
    assert command.split()[0] in cli.commands


def test_unknown_command_is_usage_error():
    result = run_cli(["frobnicate"])
    assert result.exit_code == 2


def test_no_backend_installed_exits_3_with_install_hint(tmp_path):
    host = make_host()  # the core alone
    result = run_cli(["--state-dir", str(tmp_path), "status"], host=host)
    assert result.exit_code == 3
    from tts_ops.hints import install_hint

    # from this checkout the hint names its folder: the index may not hold the plugin
    assert install_hint("tts-ops-manual").endswith("/plugins/manual")
    assert install_hint("tts-ops-manual") in result.stderr
    result = run_cli(["--state-dir", str(tmp_path), "start", "--process-manager", "systemd"],
                     host=host)
    assert result.exit_code == 3
    assert "no backend named 'systemd'" in result.stderr
    assert install_hint("tts-ops-systemd") in result.stderr
    assert "Traceback" not in result.output


def test_backends_json_marks_every_capability():
    from tts_ops_manual import plugin as manual_plugin

    rows = json.loads(run_cli(["backends", "--json"], host=make_host(manual_plugin)).stdout)
    (manual,) = rows
    assert manual["name"] == "manual" and manual["available"] is True
    assert set(manual["capabilities"]) == {"readiness", "watchdog", "health_restart",
                                           "resource_limits", "log_rotation", "instances",
                                           "auto_start", "shared_socket"}
    assert set(manual["capabilities"].values()) <= {"native", "emulated", "unsupported"}


def test_console_script_cold_path_does_not_import_plugins():
    code = ("import sys; from tts_ops.cli import create_cli; create_cli();"
            " print(sorted(m for m in ('pluggy', 'pydantic', 'psutil') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_shell_completion_works():
    base = {"PATH": "/usr/bin:/bin"}
    script = subprocess.run([sys.executable, "-m", "tts_ops"],
                            env={**base, "_TTS_OPS_COMPLETE": "bash_source"},
                            capture_output=True, text=True).stdout
    assert "_tts_ops_completion()" in script and "_TTS_OPS_COMPLETE=bash_complete" in script
    answer = subprocess.run([sys.executable, "-m", "tts_ops"],
                            env={**base, "_TTS_OPS_COMPLETE": "bash_complete",
                                 "COMP_WORDS": "tts-ops sta", "COMP_CWORD": "1"},
                            capture_output=True, text=True).stdout.split()
    assert answer == ["plain,start", "plain,status"]


def test_outside_a_checkout_the_hint_is_the_index_name(monkeypatch):
    from tts_ops import hints

    monkeypatch.setattr(hints, "checkout_root", lambda: None)
    assert hints.install_hint("tts-ops-manual") == "pip install tts-ops-manual"
    assert hints.install_hint("tts-server") == "pip install tts-server"


def test_shared_options_work_after_the_subcommand_too(tmp_path):
    import json

    from tts_ops.testing import make_host
    from tts_ops_manual import plugin as manual_plugin

    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [{"name": "after", "command": ["sleep", "1"]}]}))
    host = make_host(manual_plugin)
    state = tmp_path / "st"
    for args in (["status", "--json", "-c", str(cfg), "--state-dir", str(state)],
                 ["-c", str(cfg), "--state-dir", str(state), "status", "--json"]):
        out = run_cli(args, host=host)
        assert out.exit_code == 0, out.output
        assert [r["name"] for r in json.loads(out.stdout)] == ["after"]
    assert state.is_dir()
    verbose = run_cli(["status", "-v", "-c", str(cfg), "--state-dir", str(state)], host=host)
    assert verbose.exit_code == 0 and "manual" in verbose.stdout
    for nested in (["config", "validate", "-c", str(cfg)],
                   ["discovery", "list", "--state-dir", str(state)],
                   ["deploy", "history", "--state-dir", str(state)],
                   ["logs", "stats", "after", "-c", str(cfg), "--state-dir", str(state)]):
        out = run_cli(nested, host=host)
        assert out.exit_code == 0, (nested, out.output)


def test_config_validate_refuses_what_plan_refuses(tmp_path):
    import json

    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [
        {"name": "a", "command": ["true"], "port": 9100, "depends_on": [{"service_name": "b"}]},
        {"name": "b", "command": ["true"], "port": 9101,
         "depends_on": [{"service_name": "a"}]}]}))
    validated = run_cli(["config", "validate", "-c", str(cfg)])
    planned = run_cli(["-c", str(cfg), "orchestrate", "plan"])
    assert planned.exit_code == 2, planned.output
    assert validated.exit_code == 2, validated.output
    assert "cycle" in planned.stderr
    assert planned.stderr.split("cycle", 1)[1] in validated.stderr  # the same problem


def test_completion_knows_services_strategies_backends_and_releases(tmp_path):
    cfg = tmp_path / "tts_services.json"
    cfg.write_text(json.dumps({"services": [{"name": "alpha", "port": 9701},
                                            {"name": "beta", "port": 9702}]}))
    state = tmp_path / "state"
    from tts_ops.deploy.releases import ReleaseStore

    store = ReleaseStore(state, "alpha")
    release = store.create({"name": "alpha"}, "direct", "development", None, None)
    failed = store.create({"name": "alpha"}, "direct", "development", None, None)
    store.save(failed, state="failed", reason="its checks failed")

    def complete(words: str) -> list[str]:
        env = {"PATH": "/usr/bin:/bin", "_TTS_OPS_COMPLETE": "bash_complete",
               "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - (
                   0 if words.endswith(" ") else 1)), "TTS_OPS_STATE_DIR": str(state)}
        out = subprocess.run([sys.executable, "-m", "tts_ops"], env=env, cwd=tmp_path,
                             capture_output=True, text=True)
        return [item.split(",", 1)[1] for item in out.stdout.split()]

    assert complete("tts-ops start ") == ["alpha", "beta"]
    assert complete("tts-ops stop alpha ") == ["beta"]  # not the one already typed
    assert complete("tts-ops status b") == ["beta"]
    assert complete("tts-ops logs stats a") == ["alpha"]
    assert complete("tts-ops deploy --strategy ") == ["blue_green", "canary", "direct",
                                                      "rolling"]
    assert "manual" in complete("tts-ops start --process-manager ")
    assert complete("tts-ops rollback alpha --to ") == [release.id]  # not the failed one
    assert {"alpha", "beta", "tail", "stats"} <= set(complete("tts-ops logs "))
    for shell, marker in (("bash", "_TTS_OPS_COMPLETE=bash_complete"),
                          ("zsh", "#compdef tts-ops"), ("fish", "fish_complete")):
        script = subprocess.run([sys.executable, "-m", "tts_ops", "completion", shell],
                                capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
        assert script.returncode == 0 and marker in script.stdout


def test_top_without_a_terminal_says_what_to_use_instead():
    out = subprocess.run([sys.executable, "-m", "tts_ops", "top"], capture_output=True,
                         text=True, stdin=subprocess.DEVNULL)
    assert out.returncode == 2
    assert out.stderr.strip() == ("tts-ops: error: tts-ops top needs a terminal; without one"
                                  " use 'tts-ops status --watch'")


def test_reserved_service_names_are_exactly_the_words_deploy_and_logs_take(tmp_path):
    import json

    from tts_ops.cli import create_cli
    from tts_ops.config.fields import RESERVED_NAMES

    cli = create_cli()
    assert set(RESERVED_NAMES) == set(cli.commands["logs"].commands) | set(
        cli.commands["deploy"].commands)
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [{"name": "stats"}]}))
    result = run_cli(["-c", str(cfg), "config", "validate"])
    assert result.exit_code == 2 and "services[0].name" in result.output
    assert "rename the service" in result.output
