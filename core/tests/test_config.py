"""Config validation: the seed's files validate; every bad case is one line naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tts_ops.testing import run_cli

ROOT = Path(__file__).resolve().parents[2]


def validate(tmp_path, text: str, suffix: str = ".json"):
    path = tmp_path / f"cfg{suffix}"
    path.write_text(text)
    return path, run_cli(["config", "validate", "-c", str(path)])


def test_seed_examples_validate_unchanged():
    result = run_cli(["config", "validate", "-c", str(ROOT / "examples/tts_services.json"),
                      "--orchestration", str(ROOT / "examples/orchestration_config.json")])
    assert result.exit_code == 0, result.output
    assert "OK (1 service)" in result.output


def test_toml_is_accepted(tmp_path):
    _path, result = validate(tmp_path, '[[services]]\nname = "a"\nport = 9100\n'
                             'command = ["sleep", "1"]\n', ".toml")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        ({"name": "a", "port": 70000}, "services[0].port: must be 1-65535 (got 70000)"),
        ({"name": "a", "port": 0}, "services[0].port: must be 1-65535 (got 0)"),
        ({"name": "a", "port": "x"}, "services[0].port: must be an integer (got 'x')"),
        ({"name": "../x"}, "services[0].name: invalid service name '../x'"),
        ({"name": "a b"}, "services[0].name: invalid service name 'a b'"),
        ({"name": ""}, "services[0].name: invalid service name ''"),
        ({"name": "A"}, "services[0].name: invalid service name 'A'"),
        ({"name": "a", "prot": 1}, "services[0].prot: unknown key; did you mean 'port'?"),
        ({"name": "a", "restart_delay": -1}, "services[0].restart_delay: must be 0-86400 (got -1"),
        ({"name": "a", "engine_type": "foo"}, "services[0].engine_type: must be one of"),
        ({"name": "a", "log_file": "rel/x.log"}, "services[0].log_file: must be an absolute path"),
        ({"name": "a", "health_check": "ftp"}, "services[0].health_check: invalid health check"),
        ({"name": "a", "stop_signal": "NOPE"}, "services[0].stop_signal: unknown signal 'NOPE'"),
        ({"name": "a", "env": {"1X": "y"}}, "services[0].env: invalid environment variable"),
        ({"name": "a", "command": []}, "services[0].command: must not be empty"),
        ({"name": "a", "instances": 0}, "services[0]: instances: 0 makes a router-only host"),
        ({"name": "a", "instances": 65}, "services[0].instances: must be 0-64 (got 65)"),
        ({"port": 9000}, "services[0].name: required field is missing"),
    ],
)
def test_bad_service_field_is_one_line_exit_2(tmp_path, service, expected):
    path, result = validate(tmp_path, json.dumps({"services": [service]}))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"tts-ops: error: {path}: {expected}"), lines[0]
    assert "Traceback" not in result.output


def test_every_problem_is_reported_at_once(tmp_path):
    bad = {"services": [{"name": "../x", "port": 70000, "prot": 1}, {"name": "ok", "port": -5}]}
    _path, result = validate(tmp_path, json.dumps(bad))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 4
    assert any("services[1].port" in line for line in lines)


def test_duplicate_names_and_ports(tmp_path):
    _p, result = validate(tmp_path, json.dumps({"services": [{"name": "a"}, {"name": "a",
                                                                              "port": 9001}]}))
    assert result.exit_code == 2
    assert "services[1].name: duplicate service name 'a' (also services[0])" in result.stderr
    _p, result = validate(tmp_path, json.dumps({"services": [{"name": "a"}, {"name": "b"}]}))
    assert "services[1].port: port 9000 is already used by services[0]" in result.stderr


def test_malformed_json_reports_line_and_column(tmp_path):
    path, result = validate(tmp_path, '{"services": [\n  {"name": "x",}\n]}')
    assert result.exit_code == 2
    assert f"{path}: line 2 column 16: invalid JSON" in result.stderr


def test_malformed_toml_reports_line_and_column(tmp_path):
    _path, result = validate(tmp_path, '[[services]\nname = "x"\n', ".toml")
    assert result.exit_code == 2
    assert "invalid TOML" in result.stderr and "line 1" in result.stderr


def test_top_level_must_be_an_object(tmp_path):
    _path, result = validate(tmp_path, "[1, 2]")
    assert result.exit_code == 2 and "top level must be an object" in result.stderr


def test_unknown_top_level_key_suggests(tmp_path):
    _path, result = validate(tmp_path, json.dumps({"servces": []}))
    assert "servces: unknown key; did you mean 'services'?" in result.stderr


def test_missing_file(tmp_path):
    result = run_cli(["config", "validate", "-c", str(tmp_path / "nope.json")])
    assert result.exit_code == 2 and "no such config file" in result.stderr


def test_orchestration_unknown_service_needs_a_url(tmp_path):
    cfg = tmp_path / "s.json"
    cfg.write_text(json.dumps({"services": [{"name": "api"}]}))
    orch = tmp_path / "o.json"
    orch.write_text(json.dumps({"dependencies": [{"service_name": "apu"},
                                                 {"service_name": "x", "timeout": -1}]}))
    result = run_cli(["config", "validate", "-c", str(cfg), "--orchestration", str(orch)])
    assert result.exit_code == 2
    assert "dependencies[1].timeout: must be 0-86400 (got -1" in result.stderr


def test_config_resolution_order(tmp_path, monkeypatch):
    (tmp_path / "tts_services.json").write_text(json.dumps({"services": [{"name": "local"}]}))
    env_cfg = tmp_path / "env.json"
    env_cfg.write_text(json.dumps({"services": [{"name": "fromenv"}]}))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TTS_OPS_CONFIG", raising=False)
    assert '"local"' in run_cli(["config", "show", "--json"]).output
    monkeypatch.setenv("TTS_OPS_CONFIG", str(env_cfg))
    assert '"fromenv"' in run_cli(["config", "show", "--json"]).output
    monkeypatch.delenv("TTS_OPS_CONFIG")
    (tmp_path / "tts_services.json").unlink()
    shown = json.loads(run_cli(["config", "show", "--json"]).stdout)
    assert shown["source"] == "<embedded default>"
    assert shown["services"][0]["name"] == "tts-primary"


def test_show_fills_defaults_and_the_effective_command(tmp_path):
    cfg = tmp_path / "s.json"
    cfg.write_text(json.dumps({"services": [{"name": "a", "engine_type": "espeak",
                                             "port": 9123}]}))
    shown = json.loads(run_cli(["--state-dir", str(tmp_path / "st"), "config", "show", "-c",
                                str(cfg), "--json"]).output)
    svc = shown["services"][0]
    assert svc["max_restarts"] == 3 and svc["restart_delay"] == 5.0
    assert svc["effective_command"][1:] == ["-m", "tts_server", "--host", "127.0.0.1", "--port",
                                            "9123", "--engine", "espeak", "--log-level", "INFO",
                                            "--instance", svc["name"]]
    assert svc["effective_log_file"] == str(tmp_path / "st" / "logs" / "a.log")


def test_every_default_is_documented():
    from tts_ops.config.models import ServiceConfig

    doc = (ROOT / "docs" / "config.md").read_text()
    section = doc.split("## Service fields", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`") and cells[0].endswith("`"):
            rows[cells[0].strip("`")] = cells[1]
    assert set(rows) == set(ServiceConfig.model_fields)
    for name, field in ServiceConfig.model_fields.items():
        if field.is_required():
            assert rows[name] == "(required)"
            continue
        default = field.default if field.default_factory is None else field.default_factory()
        if name == "health_check":
            default = default.describe()
        elif hasattr(default, "model_dump"):
            default = default.model_dump(mode="json")
        assert rows[name] == f"`{json.dumps(default)}`", name


def test_the_discovery_keys_the_core_keeps_are_its_model_s_fields():
    """The hot path tells the core's discovery keys from a registry plugin's without
    pydantic: its list must be the model's."""
    from tts_ops.config.models import DiscoveryConfig
    from tts_ops.discovery.registry import CORE_FIELDS

    assert set(CORE_FIELDS) == set(DiscoveryConfig.model_fields)


def test_a_fleet_inventory_refuses_what_ssh_could_take_for_an_option(tmp_path):
    """Host names, destinations and remote commands are checked before anything runs."""
    import pytest
    from pydantic import ValidationError

    from tts_ops.fleet.inventory import FleetConfig

    good = {"name": "web-1", "ssh": "deploy@10.0.0.1"}
    FleetConfig.model_validate({"hosts": [good]})
    for host, field in (({**good, "ssh": "-oProxyCommand=id"}, "ssh"),
                        ({**good, "ssh": "a b"}, "ssh"),
                        ({**good, "ssh": "host\nx"}, "ssh"),
                        ({**good, "name": "Web 1"}, "name"),
                        ({**good, "tts_ops": "--help"}, "tts_ops"),
                        ({**good, "tts_ops": "x\x1b[31m"}, "tts_ops"),
                        ({**good, "overrides": {"name": "other"}}, "overrides")):
        with pytest.raises(ValidationError) as caught:
            FleetConfig.model_validate({"hosts": [host]})
        assert caught.value.errors()[0]["loc"][-1] == field, caught.value
    with pytest.raises(ValidationError, match="listed twice"):
        FleetConfig.model_validate({"hosts": [good, good]})


def test_a_source_tree_sent_to_a_host_cannot_write_outside_its_directory(tmp_path):
    """A tar that climbs out (``..``, an absolute path, a link out) is one line, and
    nothing lands outside the state dir; a good tree is kept once, by content."""
    import io
    import os
    import tarfile

    import pytest

    from tts_ops.errors import ConfigError
    from tts_ops.fleet.sources import keep, pack

    state = tmp_path / "state"

    def tar_of(info: tarfile.TarInfo, data: bytes = b"") -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    link = tarfile.TarInfo("passwd")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    for evil in (tar_of(tarfile.TarInfo("../escaped"), b"bad"), tar_of(link)):
        with pytest.raises(ConfigError, match="not a source tree it can unpack"):
            keep(state, "tts", evil)
    assert not (tmp_path / "escaped").exists()
    # an absolute name is taken as relative: it lands inside, never at /tmp/...
    kept = keep(state, "tts", tar_of(tarfile.TarInfo("/tmp/escaped-abs"), b"abs"))
    assert (kept / "tmp" / "escaped-abs").read_bytes() == b"abs"
    assert not os.path.exists("/tmp/escaped-abs")
    assert [p.name for p in (state / "fleet" / "sources").iterdir()] == [kept.name]
    source = tmp_path / "src"
    (source / "pkg").mkdir(parents=True)
    (source / "pkg" / "VERSION").write_text("2\n")
    (source / "link").symlink_to("pkg/VERSION")
    first = keep(state, "tts", pack(source))
    assert (first / "pkg" / "VERSION").read_text() == "2\n"
    assert os.readlink(first / "link") == "pkg/VERSION"
    assert keep(state, "tts", pack(source)) == first
    with pytest.raises(ConfigError, match="not a service name"):
        keep(state, "../x", pack(source))
