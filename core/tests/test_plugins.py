"""The plugin host: registration, duplicates, failing plugins, events, `plugins --json`."""

from __future__ import annotations

import json

import pytest

from tts_ops import hookimpl
from tts_ops.errors import PluginError
from tts_ops.testing import free_port, make_host, run_cli


class Backends:
    @hookimpl
    def tts_ops_register_backends(self, register):
        register.add("fake", lambda ctx: None)


class SameName:
    @hookimpl
    def tts_ops_register_backends(self, register):
        register.add("fake", lambda ctx: None)


class Raises:
    @hookimpl
    def tts_ops_service_ready(self, service):
        raise RuntimeError("boom")

    @hookimpl
    def tts_ops_register_strategies(self, register):
        raise RuntimeError("cannot register")


class Records:
    def __init__(self):
        self.seen = []

    @hookimpl
    def tts_ops_service_ready(self, service, backend):
        self.seen.append((service, backend))


def test_registration_is_recorded_per_plugin():
    plugin = Backends()
    host = make_host(plugin)
    reg = host.lookup("backend", "fake")
    assert reg.name == "fake"
    assert reg.plugin == host.pm.get_name(plugin)


def test_duplicate_name_names_both_plugins():
    host = make_host(Backends(), SameName())
    with pytest.raises(PluginError, match=r"backend 'fake' is registered by both .* and "):
        host.registrations("backend")


def test_unknown_name_lists_registered_and_hints_install():
    host = make_host(Backends())
    import re

    from tts_ops.hints import install_hint

    with pytest.raises(PluginError, match=r"no backend named 'systemd' \(registered: fake\);"
                       r" install it with: " + re.escape(install_hint("tts-ops-systemd"))):
        host.lookup("backend", "systemd")


def test_a_raising_event_hook_does_not_stop_the_others(caplog):
    recorder = Records()
    host = make_host(recorder, Raises())
    host.emit("tts_ops_service_ready", service="svc", backend="manual", status=None)
    assert recorder.seen == [("svc", "manual")]  # called with only the arguments it names
    assert any("boom" in w.error for w in host.warnings)
    # a registration hook that raises is a warning too; the kind is still usable
    assert host.registrations("strategy").names() == []
    assert any("cannot register" in w.error for w in host.warnings)


def test_validation_hook_problems_are_collected():
    class Check:
        @hookimpl
        def tts_ops_validate_config(self, config):
            return [f"services[{i}].name: no 'x' allowed" for i, s in enumerate(config.services)
                    if "x" in s.name]

    host = make_host(Check())
    from tts_ops.config.models import TtsOpsConfig

    cfg = TtsOpsConfig.model_validate({"services": [{"name": "ax"}]})
    problems = host.collect("tts_ops_validate_config", config=cfg)
    assert problems == ["services[0].name: no 'x' allowed"]


def test_plugins_json_shape():
    result = run_cli(["plugins", "--json"], host=make_host(Backends()))
    rows = json.loads(result.stdout)
    keys = ["distribution", "hooks", "name", "registers", "version"]
    assert [sorted(r) for r in rows] == [keys] * len(rows)
    fake = next(r for r in rows if r["registers"])
    assert fake["registers"] == {"backend": ["fake"]}
    assert fake["hooks"] == ["tts_ops_register_backends"]
    builtin = next(r for r in rows if r["name"] == "tts_ops.builtins")
    assert builtin["distribution"] == "tts-ops"


def test_validation_hook_failure_exits_2(tmp_path):
    class Check:
        @hookimpl
        def tts_ops_validate_config(self, config):
            return ["services[0].port: reserved by policy"]

    cfg = tmp_path / "c.json"
    cfg.write_text('{"services": [{"name": "a"}]}')
    result = run_cli(["config", "validate", "-c", str(cfg)], host=make_host(Check()))
    assert result.exit_code == 2
    assert f"{cfg}: services[0].port: reserved by policy" in result.stderr


def test_hooks_are_called_through_pluggy_with_tracing_and_wrappers(tmp_path, monkeypatch,
                                                                   capfd):
    import json

    from tts_ops import hookimpl
    from tts_ops.testing import make_host, run_cli

    class Policy:
        @hookimpl
        def tts_ops_validate_config(self, config):
            return ["policy: needs a team label"]

    class Wrapper:
        @hookimpl(wrapper=True)
        def tts_ops_validate_config(self, config):
            results = yield  # one list of problems per implementation
            return [*results, [f"wrapper: saw {len(results)} plugin's problems"]]

    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [{"name": "a", "command": ["true"]}]}))
    monkeypatch.setenv("TTS_OPS_TRACE_PLUGINS", "1")
    host = make_host(Policy(), Wrapper())
    out = run_cli(["config", "validate", "-c", str(cfg)], host=host)
    assert out.exit_code == 2
    assert "policy: needs a team label" in out.stderr
    assert "wrapper: saw 1 plugin's problems" in out.stderr  # a wrapper=True one ran
    traced = capfd.readouterr().err
    assert "tts_ops_validate_config [hook]" in traced


def test_a_raising_event_hook_is_reported_once_and_the_rest_still_run():
    from tts_ops import hookimpl
    from tts_ops.testing import make_host

    seen = []

    class Broken:
        @hookimpl
        def tts_ops_deploy_started(self, deploy):
            raise ValueError("boom")

    class Fine:
        @hookimpl
        def tts_ops_deploy_started(self, deploy):
            seen.append(deploy["id"])

    host = make_host(Broken(), Fine())
    host.emit("tts_ops_deploy_started", deploy={"id": "d1"})
    host.emit("tts_ops_deploy_started", deploy={"id": "d2"})
    assert seen == ["d1", "d2"]
    expected = "tts_ops_deploy_started raised ValueError: boom"
    assert [w.error for w in host.warnings] == [expected] * 2


def test_a_third_party_strategy_is_valid_in_config_and_a_typo_is_not(tmp_path):
    import json

    from tts_ops_strategies import plugin as strategies

    from tts_ops import hookimpl
    from tts_ops.testing import make_host, run_cli

    class Shadow:
        name = "shadow"

        def run(self, ctx):
            pass

    class ShadowPlugin:
        @hookimpl
        def tts_ops_register_strategies(self, register):
            register.add("shadow", Shadow)

    host = make_host(strategies, ShadowPlugin())
    cfg = tmp_path / "c.json"
    for strategy, code in (("shadow", 0), ("blue_green", 0), ("shadwo", 2)):
        cfg.write_text(json.dumps({"services": [{"name": "a", "command": ["true"],
                                                 "deploy": {"strategy": strategy}}]}))
        out = run_cli(["config", "validate", "-c", str(cfg)], host=host)
        assert out.exit_code == code, out.output
    assert "services[0].deploy.strategy: no strategy named 'shadwo'; did you mean 'shadow'?" \
        in out.stderr and "registered: " in out.stderr


class CommandPlugin:
    """Adds ``tts-ops hello world`` (and tries to take over ``status``, and a broken one)."""

    @hookimpl
    def tts_ops_register_commands(self, register):
        import click

        @click.group()
        def hello():
            """Say hello."""

        @hello.command()
        @click.option("--loud", is_flag=True)
        @click.pass_obj
        def world(app, loud):
            click.echo(f"hello {app.state_dir}" + ("!" if loud else ""))

        @click.command()
        def status():
            click.echo("not the core's status")

        def broken():
            raise RuntimeError("no such thing")

        register.add("hello", lambda: hello)
        register.add("status", lambda: status)
        register.add("broken", broken)


def test_a_plugin_adds_commands_that_share_the_core_options(tmp_path):
    host = make_host(CommandPlugin())
    state = tmp_path / "st"
    result = run_cli(["hello", "world", "--loud", "--state-dir", str(state)], host=host)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"hello {state}!"
    listed = run_cli(["--help"], host=host).output
    assert "hello" in listed and "Say hello." in listed
    # the core's own command wins over a plugin's of the same name
    status = run_cli(["status", "--state-dir", str(state), "--json"], host=host)
    assert "not the core's status" not in status.output
    broken = run_cli(["broken"], host=host)
    assert broken.exit_code == 2 and "could not build its command 'broken'" in broken.output
    assert "no such thing" in broken.output and "Traceback" not in broken.output


def test_core_commands_never_load_plugins_for_commands(tmp_path):
    built = []

    def factory():
        built.append(1)
        return make_host(CommandPlugin())

    from click.testing import CliRunner

    from tts_ops.cli import create_cli

    assert CliRunner().invoke(create_cli(factory), ["--version"]).exit_code == 0
    assert built == []
    CliRunner().invoke(create_cli(factory), ["hello", "world", "--state-dir", str(tmp_path)])
    assert built == [1]  # one host for the lookup and the command's App


class OptionsPlugin:
    """A log sink whose ``options.slowroll`` section the core validates with its model."""

    @hookimpl
    def tts_ops_register_log_sinks(self, register):
        def model():
            from pydantic import BaseModel, ConfigDict, StrictInt

            class Section(BaseModel):
                model_config = ConfigDict(extra="forbid")
                pause: StrictInt = 1

            return Section

        register.add("slowroll", lambda: None, options=model)


def test_a_plugins_options_section_is_validated_by_its_model(tmp_path):
    host = make_host(OptionsPlugin())

    def validate(options):
        cfg = tmp_path / "c.json"
        cfg.write_text(json.dumps({"services": [{"name": "svc", "options": options}]}))
        return run_cli(["-c", str(cfg), "config", "validate", "--json"], host=host)

    good = validate({"slowroll": {"pause": 3}})
    assert good.exit_code == 0 and json.loads(good.stdout)["warnings"] == []
    bad = validate({"slowroll": {"pause": "3", "pasue": 1}})
    assert bad.exit_code == 2
    problems = json.loads(bad.stdout)["problems"]
    assert any("services[0].options.slowroll.pause: must be an integer" in p for p in problems)
    assert any("services[0].options.slowroll.pasue: unknown key; did you mean 'pause'?" in p
               for p in problems)
    stray = validate({"nosuchplugin": {"x": 1}})
    assert stray.exit_code == 0
    assert any("services[0].options.nosuchplugin: no installed plugin takes options" in w
               for w in json.loads(stray.stdout)["warnings"])


def test_a_backend_flag_reaches_its_backend_only_and_a_broken_one_is_a_warning(tmp_path):
    import json

    import click

    from tts_ops.backend import BackendUnavailable

    seen = []

    class Probe:
        @hookimpl
        def tts_ops_register_backends(self, register):
            def factory(ctx):
                seen.append(dict(ctx.options))
                raise BackendUnavailable("probe: not here")

            register.add("probe", factory)

        @hookimpl
        def tts_ops_register_options(self, register):
            register.add("greeting", lambda: click.Option(["--greeting"]), backend="probe")
            register.add("other_flag", lambda: click.Option(["--other-flag"]),
                         backend="other", key="x")
            register.add("broken", lambda: 1 / 0, backend="probe")

    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [{"name": "a", "command": ["true"]}]}))
    out = run_cli(["-c", str(cfg), "--state-dir", str(tmp_path / "st"), "start", "a",
                   "--process-manager", "probe", "--greeting", "hi", "--other-flag", "y"],
                  host=make_host(Probe()))
    assert out.exit_code == 3, out.output
    assert seen and seen[0]["greeting"] == "hi" and "x" not in seen[0]
    assert "could not build its flag 'broken': division by zero" in out.stderr
    help_text = run_cli(["start", "--help"], host=make_host(Probe())).stdout
    assert "--greeting" in help_text and "--other-flag" in help_text
    assert "--greeting" not in run_cli(["start", "--help"], host=make_host()).stdout


def test_a_strategy_s_own_settings_live_under_deploy_its_name(tmp_path):
    import json

    from pydantic import BaseModel, ConfigDict, Field

    from tts_ops.deploy.context import DeployFailed
    from tts_ops_manual import plugin as manual

    seen = []

    class MirrorOptions(BaseModel):
        model_config = ConfigDict(extra="forbid")
        mirror_percent: int = Field(default=10, ge=0, le=100)

    class Shadow:
        name, same_slot, initial_weight = "shadow", False, 0

        def run(self, ctx):
            seen.append(ctx.options)
            raise DeployFailed("shadow: only looking")

        def rollback(self, ctx):
            pass

    class ShadowPlugin:
        @hookimpl
        def tts_ops_register_strategies(self, register):
            register.add("shadow", Shadow, options=lambda: MirrorOptions)

    host = make_host(manual, ShadowPlugin())
    cfg = tmp_path / "c.json"

    port = free_port()  # not the default 9000: the README's own service may hold it

    def config(deploy):
        cfg.write_text(json.dumps({"services": [{"name": "a", "command": ["true"],
                                                 "port": port, "deploy": deploy}]}))
        return run_cli(["config", "validate", "-c", str(cfg), "--state-dir",
                        str(tmp_path / "st")], host=host)

    assert config({"strategy": "shadow", "shadow": {"mirror_percent": 5}}).exit_code == 0
    bad = config({"strategy": "shadow", "shadow": {"mirror_percent": 500}})
    assert bad.exit_code == 2
    assert "services[0].deploy.shadow.mirror_percent: " in bad.stderr
    typo = config({"strategy": "shadow", "drain_secnds": 1})
    assert typo.exit_code == 2
    assert "services[0].deploy.drain_secnds: unknown key; did you mean 'drain_seconds'?" in (
        typo.stderr)
    config({"strategy": "shadow", "shadow": {"mirror_percent": 5}})
    out = run_cli(["-c", str(cfg), "--state-dir", str(tmp_path / "st"), "deploy", "a",
                   "--process-manager", "manual"], host=host)
    assert out.exit_code == 1 and "shadow: only looking" in out.output
    assert [o.mirror_percent for o in seen] == [5]
    config({"strategy": "shadow"})  # no section: the model's defaults
    run_cli(["-c", str(cfg), "--state-dir", str(tmp_path / "st"), "deploy", "a",
             "--process-manager", "manual"], host=host)
    assert [o.mirror_percent for o in seen] == [5, 10]
