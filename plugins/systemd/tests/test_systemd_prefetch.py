"""``tts-ops status`` starts the ``systemctl show`` the last same status ran before it
imports anything else (`tts_ops.prefetch`): against a real ``systemd --user``, its answer
is the one a fresh query gives, and a change the command itself makes is never answered
from before it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from tts_ops.testing import service


def _snippet(code: str, state_dir) -> dict:
    """Run ``code`` in a fresh interpreter (the prefetch state is per process)."""
    env = {**os.environ, "TTS_OPS_STATE_DIR": str(state_dir)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


QUERY = """
import json, sys
from tts_ops import prefetch
from tts_ops_systemd.systemctl import Systemctl
prefetch.start(["status", "--json", "prefetch-test"])
early = sorted(" ".join(argv) for argv in prefetch._early)
ctl = Systemctl("user")
units = {units!r}
{first}
before = ctl.show(units)
after = ctl.show(units)
prefetch.save()
print(json.dumps({{"early": early, "before": before, "after": after,
                  "left": len(prefetch._early)}}))
"""


@pytest.fixture
def running(backend):
    svc = service(f"pf-{uuid.uuid4().hex[:8]}", command=["sleep", "600"], notify=False,
                  health_check="none", start_seconds=0)
    backend.start(svc)
    yield backend.plan(svc).unit_name
    backend.uninstall(svc)


def test_the_second_run_is_answered_by_the_query_started_at_its_start(running, state_dir):
    code = QUERY.format(units=[running], first="")
    first = _snippet(code, state_dir)
    assert first["early"] == []  # nothing known yet: it runs the query itself
    plan_dir = state_dir / "cache" / "prefetch"
    assert oct(plan_dir.stat().st_mode & 0o777) == "0o700"
    plans = list(plan_dir.iterdir())
    assert len(plans) == 1 and oct(plans[0].stat().st_mode & 0o777) == "0o600"
    second = _snippet(code, state_dir)
    assert len(second["early"]) == 1 and f"show {running}" in second["early"][0]
    assert second["left"] == 0  # taken, not run twice
    assert second["before"][running]["ActiveState"] == "active"
    assert second["before"][running]["MainPID"] == first["before"][running]["MainPID"]


def test_a_change_the_command_makes_is_not_answered_from_before_it(running, state_dir):
    _snippet(QUERY.format(units=[running], first=""), state_dir)  # the plan
    stop = f"ctl.run('stop', {running!r})"
    seen = _snippet(QUERY.format(units=[running], first=stop), state_dir)
    assert len(seen["early"]) == 1  # started while the unit was active
    # ... before the stop this run made: it must not be the answer after it
    assert seen["before"][running]["ActiveState"] != "active"


def test_status_through_the_cli_prints_what_a_fresh_status_prints(running, backend, tmp_path):
    cfg = tmp_path / "c.json"
    name = running.removeprefix("tts-ops-").removesuffix(".service")
    cfg.write_text(json.dumps({"services": [{
        "name": name, "command": ["sleep", "600"], "notify": False, "health_check": "none",
        "start_seconds": 0, "process_manager": "systemd",
        "options": {"systemd": {"scope": "user"}}}]}))
    argv = [sys.executable, "-m", "tts_ops", "-c", str(cfg), "--state-dir",
            str(backend.ctx.state_dir), "status", "--json"]

    def status() -> dict:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        row = json.loads(out.stdout)[0]
        return {k: row[k] for k in ("name", "state", "pid", "ready", "restarts")}

    fresh = status()
    assert fresh["state"] == "running"
    assert status() == fresh  # answered early: the same
    subprocess.run(["systemctl", "--user", "stop", running], check=True, timeout=60)
    assert status()["state"] == "stopped"  # started after the stop: sees it
