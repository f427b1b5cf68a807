"""State another user planted never decides what runs: the exploit of a read-only `status`
that started a planted release as root, against a real supervisord, with ``nobody``
planting and root running tts-ops (the CLI as a real process)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest

NOBODY = 65534
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as nobody")


def as_nobody(code: str) -> None:
    """Run ``code`` in Python as ``nobody``, as another local user would."""
    subprocess.run(["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY),
                    "--clear-groups", sys.executable, "-c", code], check=True)


def plant(root: str, name: str, marker: str) -> None:
    """What the report did as nobody: a dead deploy's journal and a release whose config
    runs a command of theirs."""
    journal = {"deploy_id": "d-evil", "service": name, "strategy": "blue_green",
               "backend": "supervisor", "old_generation": "plain", "old_release": "r1",
               "new_generation": "blue", "release": None, "pid": 999999,
               "written_at": 0.0, "started_at": 0.0}
    manifest = {"id": "r1", "service": name, "created_at": 0.0, "state": "active",
                "config": {"name": name, "command": [
                    "/bin/sh", "-c", f"id > {marker}; exec sleep 600"]}}
    as_nobody(f"""
import json, os
root = {root!r}
os.makedirs(root + "/vstate/deploy"); os.makedirs(root + "/vstate/releases/{name}/r1")
open(root + "/vstate/deploy/{name}.journal.json", "w").write({json.dumps(journal)!r})
open(root + "/vstate/releases/{name}/r1/manifest.json", "w").write({json.dumps(manifest)!r})
""")


@pytest.fixture
def planted(tmp_path, supervisord):
    root = f"/tmp/tts-planted-{uuid.uuid4().hex[:8]}"
    os.mkdir(root)
    os.chown(root, NOBODY, NOBODY)
    name = "pub1"
    marker = f"{root}/PWNED"
    plant(root, name, marker)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"services": [{"name": name, "command": ["/bin/true"],
                                             "process_manager": "supervisor"}]}))
    yield root, cfg, marker, name
    shutil.rmtree(root, ignore_errors=True)


def tts_ops(cfg, state_dir, supervisord, *args):
    env = {**os.environ, "TTS_OPS_SUPERVISOR_CONF": str(supervisord.conf),
           "TTS_OPS_STATE_DIR": str(state_dir)}
    return subprocess.run([sys.executable, "-m", "tts_ops", "-c", str(cfg), *args],
                          capture_output=True, text=True, env=env, timeout=120)


def programs(supervisord) -> list[str]:
    from tts_ops_supervisor.conf import read_conf
    from tts_ops_supervisor.rpc import Client

    return [p["name"] for p in Client(read_conf(supervisord.conf)).call(
        "supervisor.getAllProcessInfo")]


@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["events"],
                                     ["logs", "pub1"], ["recover"], ["start", "pub1"],
                                     ["stop", "pub1"]])
def test_a_state_dir_another_user_planted_is_refused_by_every_command(planted, supervisord,
                                                                      command):
    root, cfg, marker, name = planted
    result = tts_ops(cfg, f"{root}/vstate", supervisord, *command)
    assert result.returncode == 2, result
    [line] = result.stderr.splitlines()
    assert f"{root}" in line and "uid 65534 (nobody)" in line, line
    assert "Traceback" not in result.stderr
    assert not os.path.exists(marker)
    assert not any(name in p for p in programs(supervisord))


def test_a_symlink_another_user_owns_is_refused_even_to_a_dir_of_ours(tmp_path, supervisord,
                                                                      planted):
    root, cfg, marker, _name = planted
    ours = tmp_path / "ours"
    ours.mkdir(mode=0o700)
    as_nobody(f"import os; os.symlink({str(ours)!r}, {root + '/link'!r})")
    result = tts_ops(cfg, f"{root}/link", supervisord, "status")
    assert result.returncode == 2
    assert "uid 65534 (nobody)" in result.stderr and f"{root}" in result.stderr
    assert not os.path.exists(marker)


def test_a_file_of_another_user_inside_our_state_dir_is_refused(tmp_path, supervisord, planted):
    """Our own state dir, but the journal and manifest in it are nobody's (moved in, as a
    file another user wrote): status names the file and its owner; nothing runs."""
    root, cfg, marker, name = planted
    state = tmp_path / "state"
    shutil.copytree(f"{root}/vstate", state)  # root's copy: ours
    os.chmod(state, 0o700)
    os.rename(f"{root}/vstate/deploy/{name}.journal.json",
              state / "deploy" / f"{name}.journal.json")  # keeps nobody as its owner
    result = tts_ops(cfg, state, supervisord, "recover")
    assert result.returncode == 2, result
    assert f"{name}.journal.json: belongs to uid 65534 (nobody)" in result.stderr
    assert not os.path.exists(marker)


def test_a_manifest_of_ours_whose_config_the_model_refuses_runs_nothing(tmp_path, supervisord,
                                                                       planted):
    root, cfg, marker, name = planted
    state = tmp_path / "state"
    shutil.copytree(f"{root}/vstate", state)
    for path in state.rglob("*"):
        os.chmod(path, 0o700 if path.is_dir() else 0o600)
    os.chmod(state, 0o700)
    manifest = state / "releases" / name / "r1" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["config"]["command"] = "/bin/sh -c 'id > x'"  # a string, not an argv list
    manifest.write_text(json.dumps(data))
    os.chmod(manifest, 0o600)
    status = tts_ops(cfg, state, supervisord, "status")
    assert "was interrupted" in status.stderr and "tts-ops recover" in status.stderr
    result = tts_ops(cfg, state, supervisord, "recover")
    assert result.returncode == 2, result
    [line] = result.stderr.splitlines()
    assert "not a release manifest (config.command:" in line
    assert not any(name in p for p in programs(supervisord))
    # a journal of ours that is not one (an unknown field) is named, and nothing runs
    journal = state / "deploy" / f"{name}.journal.json"
    journal.write_text(json.dumps({**json.loads(journal.read_text()), "command": ["x"]}))
    result = tts_ops(cfg, state, supervisord, "recover")
    assert "is not a deploy journal (unknown field 'command')" in result.stderr
    assert not any(name in p for p in programs(supervisord))
    assert not os.path.exists(marker)
