"""Hostile config values: each is refused in one line naming the field, exit 2, no traceback.

The cases are the ones reproduced against earlier versions: a newline in a path that
became a supervisord program, numbers that passed validation and broke at run time
(NaN, inf, 1e300, 101 digits), bools and numeric strings taken as ports, duplicate keys,
unvalidated environment overrides, deep nesting. The last test fuzzes the loader.
"""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tts_ops.testing import run_cli

INJECTION = "/tmp\ncommand=/bin/sh -c 'id > /tmp/x'"


def validate(tmp_path, text: str, suffix: str = ".json"):
    path = tmp_path / f"cfg{suffix}"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return path, run_cli(["config", "validate", "-c", str(path)])


def one_line(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# (a service fragment as raw JSON text, the error expected after "services[0].")
CASES = [
    (f'"working_dir": {json.dumps(INJECTION)}', "working_dir: must not contain newline"),
    (f'"log_file": {json.dumps(INJECTION)}', "log_file: must not contain newline"),
    ('"pid_file": "/tmp/a\\u0000b"', "pid_file: must not contain NUL"),
    ('"source": "/tmp/a\\tb"', "source: must not contain tab"),
    ('"command": ["echo", "a\\rb"]', "command[1]: must not contain carriage return"),
    ('"env": {"A": "x\\u001b[2J"}', "env.A: must not contain control character U+001B"),
    ('"labels": {"k": "\\ud800"}', "labels.k: must not contain a lone surrogate"),
    ('"host": "127.0.0.1\\n"', "host: must not contain newline"),
    ('"start_timeout": NaN', "start_timeout: must be a finite number"),
    ('"restart_delay": NaN', "restart_delay: must be a finite number"),
    ('"watchdog_sec": 1e999', "watchdog_sec: must be a finite number"),
    ('"stop_timeout": -Infinity', "stop_timeout: must be a finite number"),
    ('"restart_backoff": 1e300', "restart_backoff: must be 1-10 (got 1e+300)"),
    ('"restart_delay_max": 1e12', "restart_delay_max: must be 0-86400"),
    (f'"max_restarts": 1{"0" * 100}', "max_restarts: must be 0-10000"),
    ('"log_max_bytes": 1152921504606846976', "log_max_bytes: must be 1-1099511627776"),
    ('"port": true', "port: must be an integer (got True)"),
    ('"port": "20100"', "port: must be an integer (got '20100')"),
    ('"port": 9000.0', "port: must be an integer (got 9000.0)"),
    ('"cpu_quota": 1.5', "cpu_quota: must be an integer"),
    ('"enable_coqui": 1', "enable_coqui: must be true or false (got 1)"),
    ('"log_file": 5', "log_file: must be a path string (got 5)"),
    ('"memory_max": "1' + "0" * 100 + '"', "memory_max: must be bytes (at most 19 digits)"),
    ('"health_check": "http://127.0.0.1:9000/he alth"', "health_check.url: invalid URL"),
    ('"health_check": "http://:9000/x"', "health_check.url: invalid URL 'http://:9000/x': has"
                                         " no host"),
    ('"health_check": "http://h:99999/x"', "health_check.url: invalid URL"),
    ('"health_check": "/he alth"', "health_check.path: must be a URL path"),
    ('"user": "no-such-user-tts-ops"', "user: no such user 'no-such-user-tts-ops' on this host"),
    ('"deploy": {"canary": {"steps": [10, 50, 1e999]}}',
     "deploy.canary.steps[2]: must be an integer"),
    ('"deploy": {"canary": {"max_error_rate": NaN}}',
     "deploy.canary.max_error_rate: must be a finite number"),
    ('"deploy": {"drain_seconds": NaN}', "deploy.drain_seconds: must be a finite number"),
    ('"depends_on": [{"service_name": "x", "health_check_url": "ftp://x"}]',
     "depends_on[0].health_check_url: invalid URL 'ftp://x': must start with http://"),
]


@pytest.mark.parametrize(("fragment", "expected"), CASES, ids=[c[1][:40] for c in CASES])
def test_hostile_service_field_is_one_line_exit_2(tmp_path, fragment, expected):
    path, result = validate(tmp_path, '{"services": [{"name": "a", ' + fragment + '}]}')
    line = one_line(result)
    assert line.startswith(f"tts-ops: error: {path}: services[0].{expected}"), line


@pytest.mark.parametrize(("text", "expected"), [
    ('{"services": [{"name": "a", "port": 9000, "port": 9001}]}',
     "duplicate key 'port': a key may appear once in each object"),
    ('{"services": [], "services": []}', "duplicate key 'services'"),
    ('{"x": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply to read"),
    ('{"services": [{"name": "a", "options": {"p": ' + "[" * 40 + "]" * 40 + "}}]}",
     "nested more than 32 levels deep"),
    ('{"services": [{"name": "a", "port": 1' + "0" * 5000 + "}]}", "cannot read config"),
])
def test_hostile_documents_are_one_line_exit_2(tmp_path, text, expected):
    path, result = validate(tmp_path, text)
    line = one_line(result)
    assert line.startswith(f"tts-ops: error: {path}: {expected}"), line


def test_a_hostile_value_is_printed_escaped_and_clipped(tmp_path):
    name = "\x1b[31m" + "x" * 10_000
    _path, result = validate(tmp_path, json.dumps({"services": [{"name": name}]}))
    line = one_line(result)
    assert "\x1b" not in line and "\\x1b" in line
    assert len(line) < 500


def test_environment_overrides_are_validated_like_the_base(tmp_path):
    doc = {"services": [{"name": "a"}], "environments": {
        "production": {"a": {"port": True, "log_file": INJECTION, "prot": 1},
                       "ghost": {"port": 9001}},
        "staging": {"a": {"name": "b"}}}}
    path, result = validate(tmp_path, json.dumps(doc))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    where = f"{path}: environments"
    assert lines[0].startswith(f"tts-ops: error: {where}.production.a.port: must be an"
                               " integer (got True)")
    assert f"{where}.production.a.log_file: must not contain newline" in result.stderr
    assert f"{where}.production.a.prot: unknown key; did you mean 'port'?" in result.stderr
    assert f"{where}.production.ghost: no service named 'ghost' (services: a)" in result.stderr
    assert f"{where}.staging.a.name: an environment cannot rename a service" in result.stderr
    assert len(lines) == 5, lines


def test_valid_values_near_every_bound_pass(tmp_path):
    service = {"name": "a", "port": 65535, "max_restarts": 10_000, "restart_delay": 86400,
               "restart_backoff": 10, "start_timeout": 0.001, "log_max_bytes": 2**40,
               "user": "nobody", "health_check": "http://[::1]:9000/health?x=1%20y",
               "command": ["echo", "é ünïcode; 100% $HOME 'q' \"q\""]}
    _path, result = validate(tmp_path, json.dumps({"services": [service]}))
    assert result.exit_code == 0, result.output


# --- fuzzing the loader: whatever the document, exit 0 or 2, one line, never a traceback ---

FIELDS = ["name", "port", "host", "command", "env", "working_dir", "log_file", "user",
          "start_timeout", "restart_delay", "restart_backoff", "max_restarts", "health_check",
          "instances", "deploy", "depends_on", "options", "labels", "memory_max", "notify"]
scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
           | st.text(max_size=30) | st.sampled_from(["/tmp/x", "tcp", "http", "a", "9000"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
services = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), values, max_size=8)
documents = st.fixed_dictionaries({"services": st.lists(services, max_size=3) | values},
                                  optional={"discovery": values, "environments": values})


@settings(max_examples=300, deadline=5000,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(document=documents | values)
def test_fuzz_json_documents_never_traceback(tmp_path, document):
    _path, result = validate(tmp_path, json.dumps(document))
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert result.stderr.startswith("tts-ops: error: ")
        assert all(line.isprintable() for line in result.stderr.splitlines())


@settings(max_examples=200, deadline=5000,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text=st.text(alphabet=string.printable + "é\x00\ud800", max_size=200))
@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_fuzz_raw_text_never_tracebacks(tmp_path, suffix, text):
    _path, result = validate(tmp_path, text, suffix)
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output


#: sections the strategies plugin validates (its models, loaded through the CLI)
STRATEGY_SECTIONS = ("deploy.rolling.", "deploy.canary.")


def _documented_bounds() -> list[tuple[str, float, float]]:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "config.md").read_text()
    section = doc.split("### Numeric bounds", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0].startswith("`"):
            lo, hi = cells[1].split()[0].split("-")
            for name in cells[0].split(", "):
                rows.append((name.strip("`"), float(lo), float(hi)))
    return rows


def _document(path: str, value: float) -> dict:
    value = int(value) if float(value).is_integer() else value
    service: dict = {"name": "a"}
    doc: dict = {"services": [service]}
    head, _, leaf = path.rpartition(".")
    if path.startswith("discovery."):
        doc["discovery"] = {leaf: value}
    elif head == "depends_on[]":
        service["depends_on"] = [{"service_name": "b", leaf: value}]
    elif path == "deploy.canary.steps[]":
        service["deploy"] = {"canary": {"steps": [value, 100] if value < 100 else [value]}}
    elif head:
        outer, _, inner = head.partition(".")
        service[outer] = {inner: {leaf: value}} if inner else {leaf: value}
    elif path.endswith("[]"):
        service[path[:-2]] = [value]
    else:
        service[path] = value
    if path == "instances":  # its low end, 0, is a router-only host's
        service.update(router="haproxy", router_scope="cluster")
    return doc


@pytest.mark.parametrize(("path", "lo", "hi"), _documented_bounds())
def test_every_documented_bound_is_the_models_bound(tmp_path, path, lo, hi):
    below = lo / 2 if not lo.is_integer() else lo - 1
    if path.startswith(STRATEGY_SECTIONS):  # a plugin's model: through the CLI that loads it
        for inside in (lo, hi):
            _path, result = validate(tmp_path, json.dumps(_document(path, inside)))
            assert result.exit_code == 0, result.output
        for outside in (below, hi + 1):
            _path, result = validate(tmp_path, json.dumps(_document(path, outside)))
            assert result.exit_code == 2 and "must be" in result.stderr, result.output
        return
    from tts_ops.config.loader import validate as check
    from tts_ops.config.models import TtsOpsConfig
    from tts_ops.errors import ConfigError

    for inside in (lo, hi):
        check(TtsOpsConfig, _document(path, inside), "doc")
    for outside in (below, hi + 1):
        with pytest.raises(ConfigError, match="must be"):
            check(TtsOpsConfig, _document(path, outside), "doc")


def test_every_numeric_field_has_a_documented_bound():
    from tts_ops_strategies.settings import CanarySettings, RollingSettings

    from tts_ops.config.models import DeploySettings, DiscoveryConfig, HealthCheck, ServiceConfig

    documented = {path for path, _lo, _hi in _documented_bounds()}
    numeric = set()
    for prefix, model in (("", ServiceConfig), ("deploy.", DeploySettings),
                          ("deploy.rolling.", RollingSettings), ("deploy.canary.", CanarySettings),
                          ("discovery.", DiscoveryConfig), ("health_check.", HealthCheck)):
        for name, field in model.model_fields.items():
            text = str(field.annotation)
            if "int" in text or "float" in text:
                numeric.add(prefix + name + ("[]" if "list" in text else ""))
    assert numeric <= documented, numeric - documented


def test_the_validated_config_cache_holding_env_values_is_private(tmp_path):
    import os
    import stat

    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [{"name": "a", "command": ["true"],
                                             "env": {"API_KEY": "hunter2"}}]}))
    state = tmp_path / "state"
    result = run_cli(["-c", str(cfg), "--state-dir", str(state), "status", "--json"])
    assert result.exit_code == 0, result.output
    [cached] = (state / "cache").glob("config-*.json")
    assert "hunter2" in cached.read_text()
    assert stat.S_IMODE(os.stat(cached).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(state / "cache").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
