"""A user and password against a real etcd with authentication on: the password comes from
a file or the environment, and is written nowhere by tts-ops."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tts_ops.testing import DUMMY, free_port, wait_for

pytestmark = pytest.mark.slow

PASSWORD = "s3cret-Zq9!"


@pytest.fixture(scope="module")
def auth_cluster(tmp_path_factory):
    from tts_ops_etcd.testing import EtcdCluster, require_etcd

    require_etcd()

    # tokens lapse after 2 idle seconds here (300 by default): clients must log in again
    with EtcdCluster(tmp_path_factory.mktemp("etcd-auth"), members=1,
                     extra=["--auth-token-ttl", "2"]) as cluster:
        env = {**os.environ, "ETCDCTL_API": "3"}
        ep = ["--endpoints", cluster.endpoints[0]]
        for argv in (["user", "add", f"root:{PASSWORD}"], ["auth", "enable"]):
            subprocess.run(["etcdctl", *ep, *argv], env=env, check=True,
                           capture_output=True)
        yield cluster


def write_config(tmp_path, cluster, port, password_file):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({
        "discovery": {"registry": "etcd", "endpoints": cluster.endpoints, "node": "n1",
                      "user": "root", "password_file": str(password_file), "ttl": 3},
        "services": [{"name": "auth-svc", "port": port, "notify": True,
                      "process_manager": "manual",
                      "command": [*DUMMY, "--port", str(port)]}]}))
    return cfg


def cli(cfg, state, *args, env=None):
    return subprocess.run([sys.executable, "-m", "tts_ops", "-c", str(cfg), "--state-dir",
                           str(state), *args], capture_output=True, text=True, timeout=60,
                          env=env)


def test_a_password_file_logs_in_and_the_password_is_stored_nowhere(tmp_path, auth_cluster):
    secret = tmp_path / "etcd-password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    port = free_port()
    cfg = write_config(tmp_path, auth_cluster, port, secret)
    state = tmp_path / "state"
    try:
        assert cli(cfg, state, "start").returncode == 0
        listed = wait_for(lambda: json.loads(cli(cfg, state, "discovery", "list",
                                                 "--json").stdout or "[]"),
                          timeout=10, message="registered through auth")
        assert [r["id"] for r in listed] == ["auth-svc:n1"]
        # the manual supervisor's heartbeats log in too: the record outlives its ttl (3 s)
        import time

        until = time.monotonic() + 5
        while time.monotonic() < until:
            out = cli(cfg, state, "discovery", "list", "--json")
            assert [r["id"] for r in json.loads(out.stdout)] == ["auth-svc:n1"], out.stderr
        for path in state.rglob("*"):
            if path.is_file():
                assert PASSWORD.encode() not in path.read_bytes(), path
    finally:
        cli(cfg, state, "stop", "--all")


def test_a_wrong_password_is_one_line_naming_the_settings(tmp_path, auth_cluster):
    secret = tmp_path / "etcd-password"
    secret.write_text("wrong")
    secret.chmod(0o644)
    cfg = write_config(tmp_path, auth_cluster, free_port(), secret)
    loose = cli(cfg, tmp_path / "state", "discovery", "list")
    assert loose.returncode == 2
    assert f"discovery.password_file: {secret} can be read by other users (mode 0644):" \
        f" chmod 600 {secret}" in loose.stderr
    secret.chmod(0o600)
    out = cli(cfg, tmp_path / "state", "discovery", "list")
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "authentication failed" in lines[0]
    assert "discovery.user" in lines[0] and "password_file" in lines[0]
    missing = write_config(tmp_path, auth_cluster, free_port(), tmp_path / "nope")
    out = cli(missing, tmp_path / "state", "discovery", "list")
    assert out.returncode == 2 and "discovery.password_file: cannot read" in out.stderr


def test_the_password_from_the_environment(tmp_path, auth_cluster):
    from tts_ops_etcd.options import PASSWORD_ENV

    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({
        "discovery": {"registry": "etcd", "endpoints": auth_cluster.endpoints,
                      "user": "root"},
        "services": [{"name": "a", "command": ["true"]}]}))
    env = {**os.environ, PASSWORD_ENV: PASSWORD}
    out = cli(cfg, tmp_path / "state", "discovery", "list", env=env)
    assert out.returncode == 0, out.stderr


def test_a_lapsed_token_means_logging_in_again(tmp_path, auth_cluster):
    import time

    from tts_ops_etcd.options import EtcdOptions
    from tts_ops_etcd.store import EtcdStore

    secret = tmp_path / "etcd-password"
    secret.write_text(PASSWORD)
    secret.chmod(0o600)
    store = EtcdStore(EtcdOptions(endpoints=auth_cluster.endpoints, user="root",
                                  password_file=str(secret), prefix="/lapse"))
    assert store.list() == []
    token = store.cluster._token
    time.sleep(3.5)  # idle past the token's ttl (the server's own clock decides)
    assert store.list() == []
    assert store.cluster._token not in (None, token)
