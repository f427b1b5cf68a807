"""`tts_ops.prefetch` starts nothing but read-only ``systemctl show`` queries, and only
from a plan that is a regular file of ours: a plan is an argv to run."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tts_ops import prefetch


@pytest.mark.parametrize(("argv", "ok"), [
    (["systemctl", "--user", "show", "a.service", "-p", "Id"], True),
    (["/tmp/x/systemctl", "show", "a.service"], False),
    (["systemctl", "--user", "stop", "a.service"], False),
    (["systemctl", "--user"], False),
    (["sh", "-c", "systemctl show x"], False),
    (["touch", "/tmp/x"], False),
])
def test_only_systemctl_show_may_be_planned(argv, ok):
    assert prefetch.read_only(argv) is ok


def _plan_path(state_dir, argv: list[str]) -> tuple[str, str]:
    """(the key `start` computes in a child run with this environment, the plan's path)"""
    code = (f"import json; from tts_ops import prefetch; prefetch.start({argv!r});"
            " print(json.dumps([prefetch._key, prefetch._plan_file]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=_env(state_dir), cwd=state_dir, check=True)
    import json

    return tuple(json.loads(out.stdout))


def _env(state_dir) -> dict:
    return {**os.environ, "TTS_OPS_STATE_DIR": str(state_dir)}


@pytest.mark.parametrize("kind", ["not read-only", "symlink", "wrong key"])
def test_a_plan_that_is_not_safe_or_not_this_runs_starts_nothing(tmp_path, kind):
    argv = ["status", "--json"]
    key, plan = _plan_path(tmp_path, argv)
    marker = tmp_path / "ran"
    os.makedirs(os.path.dirname(plan), mode=0o700, exist_ok=True)
    query = ["touch", str(marker)] if kind == "not read-only" else [
        "systemctl", "show", "--no-such-flag-so-it-fails"]
    body = "\n".join([key.replace("\n", "\\n"), "\0".join(query)]).encode()
    if kind == "wrong key":
        body = b"another invocation" + body
    if kind == "symlink":
        real = tmp_path / "elsewhere.plan"
        real.write_bytes(body)
        os.symlink(real, plan)
    else:
        with open(plan, "wb") as fh:
            fh.write(body)
    code = (f"from tts_ops import prefetch; prefetch.start({argv!r});"
            " print(len(prefetch._early))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=_env(tmp_path), cwd=tmp_path, check=True)
    assert out.stdout.strip() == "0", kind
    assert not marker.exists()


def test_plans_are_kept_for_the_latest_command_lines_only(tmp_path, monkeypatch):
    monkeypatch.setenv("TTS_OPS_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(prefetch, "MAX_PLANS", 3)
    directory = tmp_path / "cache" / "prefetch"
    for i in range(5):
        monkeypatch.setattr(prefetch, "_planned", [])
        monkeypatch.setattr(prefetch, "_wanted", [["systemctl", "show", f"u{i}.service"]])
        monkeypatch.setattr(prefetch, "_key", f"key {i}")
        monkeypatch.setattr(prefetch, "_plan_file", str(directory / f"{i}.plan"))
        prefetch.save()
        stamp = (i + 1) * 10**9  # mtimes apart even on a coarse clock
        os.utime(directory / f"{i}.plan", ns=(stamp, stamp))
    assert sorted(p.name for p in directory.iterdir()) == ["2.plan", "3.plan", "4.plan"]


def test_the_plan_name_is_the_keys_digest(tmp_path):
    key, plan = _plan_path(tmp_path, ["status"])
    assert os.path.basename(plan) == f"{key[:8]}.plan"
    assert plan.startswith(str(tmp_path))


def test_a_plan_holds_no_environment_value(tmp_path):
    """The key is a digest of the environment: the token and the etcd password that the
    environment holds are never written to the state dir."""
    secret = "s3cret-" + os.urandom(8).hex()
    env = {**_env(tmp_path), "TTS_OPS_WEB_TOKEN": secret, "TTS_OPS_ETCD_PASSWORD": secret}
    code = ("from tts_ops import prefetch; prefetch.start(['status']);"
            " prefetch._wanted.append(['systemctl', 'show', 'x.service'])")
    subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, check=True)
    [plan] = (tmp_path / "cache" / "prefetch").iterdir()
    body = plan.read_bytes()
    assert b"systemctl\0show\0x.service" in body  # the plan was written
    assert secret.encode() not in body and b"TTS_OPS_WEB_TOKEN" not in body


@pytest.mark.parametrize(("age", "answer"), [(0.0, "early"), (prefetch.FRESH_S + 1, "now")])
def test_an_answer_started_long_ago_is_not_used(monkeypatch, age, answer):
    """``web`` asks minutes after it started: a query started then is not its answer (the
    early process says "early"; a query run now says "now")."""
    import time

    argv = [sys.executable, "-c", "print('now')"]
    early = subprocess.Popen([sys.executable, "-c", "print('early')"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    monkeypatch.setattr(prefetch, "_environ", dict(os.environ))
    monkeypatch.setattr(prefetch, "_key", None)
    monkeypatch.setattr(prefetch, "_early", {tuple(argv): (time.monotonic() - age, early)})
    assert prefetch.run(argv, 30).stdout == f"{answer}\n"
    early.wait(timeout=30)
