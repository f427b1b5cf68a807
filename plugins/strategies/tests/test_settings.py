"""``deploy.rolling`` and ``deploy.canary`` belong to the strategies plugin: validated by its
models through the real CLI, and a setting written where the core's live is a one-line
error naming where it goes."""

from __future__ import annotations

import json

import pytest
from tts_ops_strategies import plugin as strategies_plugin

from tts_ops.testing import make_host, run_cli
from tts_ops_manual import plugin as manual_plugin


@pytest.fixture
def validate(tmp_path):
    host = make_host(manual_plugin, strategies_plugin)
    cfg = tmp_path / "c.json"

    def run(deploy: dict):
        cfg.write_text(json.dumps({"services": [{"name": "a", "command": ["true"],
                                                 "deploy": deploy}]}))
        return run_cli(["config", "validate", "-c", str(cfg), "--state-dir",
                        str(tmp_path / "st")], host=host)

    return run


def test_each_strategys_section_is_valid_with_its_settings(validate):
    ok = validate({"strategy": "canary", "canary": {"steps": [25, 100], "min_samples": 5,
                                                     "step_pause_seconds": 0,
                                                     "max_error_rate": 0.5},
                   "rolling": {"batch_size": 2, "max_surge": 2, "max_unavailable": 1}})
    assert ok.exit_code == 0, ok.output


@pytest.mark.parametrize(("deploy", "expected"), [
    ({"steps": [50, 100]}, "deploy.steps: a setting of the 'canary' strategy: write it as"
                           " deploy.canary.steps"),
    ({"batch_size": 2}, "deploy.batch_size: a setting of the 'rolling' strategy: write it as"
                        " deploy.rolling.batch_size"),
    ({"canary": {"steps": [50, 10]}}, "deploy.canary.steps: must be 1-100, rise and end at"
                                      " 100"),
    ({"canary": {"steps": [10, 50, 1e999]}}, "deploy.canary.steps[2]: must be an integer"),
    ({"canary": {"max_error_rate": 2}}, "deploy.canary.max_error_rate: must be"),
    ({"canary": {"min_samples": True}}, "deploy.canary.min_samples: must be"),
    ({"canary": {"stepz": [100]}}, "deploy.canary.stepz:"),
    ({"rolling": {"batch_size": 0}}, "deploy.rolling.batch_size: must be"),
    ({"rolling": "fast"}, "deploy.rolling"),
])
def test_a_misplaced_or_bad_setting_is_one_line_naming_the_fix(validate, deploy, expected):
    result = validate(deploy)
    assert result.exit_code == 2, result.output
    assert f"services[0].{expected}" in result.stderr, result.stderr
    assert "Traceback" not in result.output
