"""``tts-ops fleet`` against three hosts as network namespaces, each with Debian's OpenSSH
server (a host key and a client key made by the test, strict host key checking) and an
etcd member. Two hosts are the fleet; the third routes for the cluster (router-only, its
``discovery watch`` following the others). From the root namespace: fleet status, deploy
and rollback under ``hey`` through the router, and a host whose link is down."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

import pytest
from test_json_schemas import check  # the keys docs/json.md lists for each command

from tts_ops.testing import wait_for

pytestmark = pytest.mark.slow

SERVICE = {"name": "tts", "host": "0.0.0.0", "port": 9000, "engine_type": "espeak",
           "workers": 1, "process_manager": "manual",
           "deploy": {"drain_seconds": 1.0, "progress_deadline_seconds": 60}}
TTS_OPS = os.path.join(os.path.dirname(sys.executable), "tts-ops")


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    from tts_ops.testing.netns import Network, client_key, require_netns, require_ssh
    from tts_ops_etcd.testing import EtcdCluster, require_etcd

    require_netns()
    require_etcd()
    require_ssh()
    root = tmp_path_factory.mktemp("fleet")
    key, public = client_key(root / "client")
    with Network(3) as net, EtcdCluster(root / "etcd", hosts=net.hosts) as cluster:
        known = root / "known_hosts"
        known.write_text("".join(h.start_sshd(root / f"sshd-{h.name}", public) + "\n"
                                 for h in net.hosts))
        yield net, cluster, key, known


class Operator:
    """The machine the fleet is run from: the root namespace, its own state dir."""

    def __init__(self, root, net, cluster, key, known):
        self.net = net
        self.prefix = f"/t-{uuid.uuid4().hex[:12]}"
        self.discovery = {"registry": "etcd", "endpoints": cluster.endpoints,
                          "prefix": self.prefix, "ttl": 3}
        self.cfg = root / "fleet.json"
        self.hosts = [{"name": h.name, "ssh": f"root@{h.ip}", "tts_ops": TTS_OPS,
                       "state_dir": str(root / f"{h.name}-state")} for h in net.hosts[:2]]
        # a link that goes down is given up in seconds (the defaults allow 9-10 s)
        self.ssh_options = ["-i", str(key), "-o", f"UserKnownHostsFile={known}",
                            "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=2",
                            "-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=2"]
        self.write()
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("TTS_OPS_")},
                    "TTS_OPS_STATE_DIR": str(root / "operator"),
                    # short: ssh's control sockets live there (a unix socket path < 108 bytes)
                    "XDG_RUNTIME_DIR": tempfile.mkdtemp(prefix="ttsf"),
                    "TTS_OPS_CONFIG": str(self.cfg)}

    def write(self, service=None, **fleet):
        self.cfg.write_text(json.dumps({
            "discovery": self.discovery, "services": [service or SERVICE],
            "fleet": {"hosts": self.hosts, "ssh_options": self.ssh_options, **fleet}}))

    def cli(self, *args, check=True):
        done = subprocess.run([sys.executable, "-m", "tts_ops", *args], env=self.env,
                              capture_output=True, text=True, timeout=600)
        assert not check or done.returncode == 0, (args, done.stdout, done.stderr)
        return done

    def releases(self):
        rows = json.loads(self.cli("fleet", "status", "--json").stdout)
        return {r["fleet_host"]: r["release"] for r in rows if r.get("state") == "running"}


@pytest.fixture
def operator(network, tmp_path):
    net, cluster, key, known = network
    op = Operator(tmp_path, net, cluster, key, known)
    h3 = net.hosts[2]
    router = {"discovery": {**op.discovery, "node": h3.name},
              "services": [{**SERVICE, "router": "haproxy", "router_scope": "cluster",
                            "instances": 0}]}
    (tmp_path / "router.json").write_text(json.dumps(router))
    op.router_env = {**op.env, "TTS_OPS_CONFIG": str(tmp_path / "router.json"),
                     "TTS_OPS_STATE_DIR": str(tmp_path / "h3-state")}
    yield op
    from tts_ops.fleet import ssh
    from tts_ops.fleet.inventory import FleetConfig

    op.hosts = [h for h in op.hosts if h["name"] in ("h1", "h2")]  # a test may have changed it
    op.write()
    op.cli("fleet", "stop", "--all", check=False)
    h3.run([TTS_OPS, "stop", "--all"], env=op.router_env)
    fleet = FleetConfig.model_validate({"hosts": op.hosts, "ssh_options": op.ssh_options})
    os.environ["XDG_RUNTIME_DIR"], saved = op.env["XDG_RUNTIME_DIR"], os.environ.get(
        "XDG_RUNTIME_DIR")
    try:
        for host in fleet.hosts:
            ssh.disconnect(fleet, host)
    finally:
        if saved is None:
            del os.environ["XDG_RUNTIME_DIR"]
        else:
            os.environ["XDG_RUNTIME_DIR"] = saved
    shutil.rmtree(op.env["XDG_RUNTIME_DIR"], ignore_errors=True)


def test_fleet_deploy_and_rollback_reach_every_host_with_no_failed_request(operator):
    from tts_ops.testing.load import PinnedLoad, require_hey
    from tts_ops_haproxy.testing import require_haproxy

    require_hey()
    require_haproxy()
    h3 = operator.net.hosts[2]
    before = operator.cli("fleet", "status", "--json")
    check("fleet status", before.stdout)
    rows = json.loads(before.stdout)
    assert {r["fleet_host"] for r in rows} == {"h1", "h2"}
    assert all(r["state"] == "stopped" and r["name"] == "tts" for r in rows), rows

    first = operator.cli("fleet", "deploy", "--strategy", "blue_green")
    assert "h1: runs tts=" in first.stdout and "h2: runs tts=" in first.stdout
    # fleet deploy's JSON is checked on the deploy under load below
    for command in ("restart tts", "run status", "stop --all", "start --all"):
        check(f"fleet {command.split()[0]}",
              operator.cli("fleet", *command.split(), "--json").stdout)
    deployed = operator.releases()
    assert set(deployed) == {"h1", "h2"} and all(deployed.values()), deployed

    h3.run([TTS_OPS, "start"], env=operator.router_env, check=True)
    watch = h3.popen([TTS_OPS, "discovery", "watch"], env=operator.router_env,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from tts_ops_haproxy.testing import who

        wait_for(lambda: {i.split(":")[-1] for i in who(h3.ip, 9000, 30)} == {"h1", "h2"},
                 timeout=30, message="the router to serve from both fleet hosts")
        with PinnedLoad(f"http://{h3.ip}:9000/synthesize", connections=2, rate=10) as load:
            again = operator.cli("fleet", "deploy", "--strategy", "blue_green", "--json")
            second = operator.releases()
            rolled = operator.cli("fleet", "rollback", "--json")
            back = operator.releases()
        check("fleet deploy", again.stdout)
        check("fleet rollback", rolled.stdout)
        assert load.result.total > 0 and load.result.clean, load.result.summary()
    finally:
        watch.kill()
        watch.wait()
    assert all(second[h] != deployed[h] for h in ("h1", "h2")), (deployed, second)
    assert back == deployed, (deployed, back)


def test_a_host_whose_link_is_down_stops_the_fleet_deploy_with_one_line(operator):
    h2 = operator.net.hosts[1]
    operator.cli("fleet", "deploy", "--strategy", "blue_green")
    deployed = operator.releases()
    operator.hosts.reverse()  # h2 first: the deploy stops there, h1 is never touched
    operator.write()
    h2.down()
    try:
        done = operator.cli("fleet", "deploy", "--strategy", "blue_green", check=False)
    finally:
        h2.up()
    assert done.returncode == 1, done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("tts-ops: error")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "fleet deploy stopped at h2: unreachable over ssh" in errors[0]
    assert "not started on h1" in errors[0]
    assert operator.releases()["h1"] == deployed["h1"]


def test_fleet_status_names_an_unreachable_host_and_a_bad_inventory_is_one_line(operator):
    operator.hosts.append({"name": "h9", "ssh": "root@192.0.2.1"})  # TEST-NET: no one
    operator.write()
    done = operator.cli("fleet", "status", "--json", check=False)
    assert done.returncode == 1
    rows = json.loads(done.stdout)
    [lost] = [r for r in rows if r["fleet_host"] == "h9"]
    assert "unreachable over ssh" in lost["error"]
    assert {r["fleet_host"] for r in rows} == {"h1", "h2", "h9"}
    operator.hosts[-1] = {"name": "h9", "ssh": "-oProxyCommand=touch /tmp/pwned"}
    operator.write()
    bad = operator.cli("fleet", "status", check=False)
    assert bad.returncode == 2, bad.stderr
    assert "fleet.hosts[2].ssh: must be an ssh destination" in bad.stderr
    assert "Traceback" not in bad.stderr and not os.path.exists("/tmp/pwned")


def test_a_fleet_deploy_sends_each_host_the_source_and_prints_as_it_goes(operator,
                                                                        tmp_path):
    source = tmp_path / "release"
    (source / "conf").mkdir(parents=True)
    (source / "conf" / "VERSION").write_text("7\n")
    operator.write({**SERVICE, "source": str(source)})
    done = operator.cli("fleet", "deploy", "--strategy", "blue_green")
    lines = done.stdout.splitlines()
    for host in ("h1", "h2"):  # each host's own deploy lines, prefixed, before its verdict
        own = [i for i, line in enumerate(lines) if line.startswith(f"{host}:   ")]
        verdict = lines.index(f"{host}: deploy done")
        assert own and max(own) < verdict, done.stdout
        assert any("tts: deployed" in lines[i] for i in own), done.stdout
    for host in operator.hosts:
        state = host["state_dir"]
        [release] = json.loads(subprocess.run(
            [TTS_OPS, "--state-dir", state, "-c", _received(state), "releases", "--json"],
            capture_output=True, text=True, check=True).stdout)
        assert release["source"].startswith(state)
        with open(os.path.join(release["source"], "conf", "VERSION")) as fh:
            assert fh.read() == "7\n"
    kept = os.listdir(os.path.join(operator.hosts[0]["state_dir"], "fleet", "sources"))
    assert len(kept) == 1 and kept[0].startswith("tts-")


def _received(state: str) -> str:
    """A config the host received (each names the service; the deploy's, its source too)."""
    folder = os.path.join(state, "fleet")
    return os.path.join(folder, min(n for n in os.listdir(folder) if n.startswith("config-")))


def test_two_fleet_deploys_at_once_one_is_refused_with_one_line(operator):
    first = subprocess.Popen([sys.executable, "-m", "tts_ops", "fleet", "deploy",
                              "--strategy", "blue_green"], env=operator.env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().startswith("h1: deploy on h1")  # it holds the lock
        second = operator.cli("fleet", "deploy", check=False)
    finally:
        _out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode != 0 and "Traceback" not in second.stderr
    assert "another deploy is in progress" in second.stderr, second.stderr
    assert len(second.stderr.strip().splitlines()) == 1, second.stderr


def test_rollback_on_failure_takes_the_hosts_already_deployed_back(operator):
    h2 = operator.net.hosts[1]
    operator.cli("fleet", "deploy", "--strategy", "blue_green")
    before = operator.releases()
    h2.down()  # h1 deploys, then h2 cannot be reached
    try:
        done = operator.cli("fleet", "deploy", "--strategy", "blue_green",
                            "--rollback-on-failure", check=False)
    finally:
        h2.up()
    assert done.returncode == 1, done.stdout
    assert "h1: deploy done" in done.stdout and "h1: rollback done" in done.stdout
    assert "fleet deploy stopped at h2: unreachable over ssh" in done.stderr
    assert operator.releases() == before  # h1 back on its release, h2 never left it


def test_a_router_only_host_in_the_fleet_is_skipped_by_deploys_and_listed_by_status(
        operator):
    h3 = operator.net.hosts[2]
    operator.hosts.append({"name": "h3", "ssh": f"root@{h3.ip}", "tts_ops": TTS_OPS,
                           "state_dir": operator.router_env["TTS_OPS_STATE_DIR"],
                           "overrides": {"router": "haproxy", "router_scope": "cluster",
                                         "instances": 0}})
    operator.write()
    done = operator.cli("fleet", "deploy", "--strategy", "blue_green")
    assert "h3: h3 only routes (instances: 0): nothing to deploy there" in done.stdout
    assert "h1: deploy done" in done.stdout and "h2: deploy done" in done.stdout
    rows = json.loads(operator.cli("fleet", "status", "--json").stdout)
    assert [r["name"] for r in rows if r["fleet_host"] == "h3"] == ["tts-router"], rows


def test_a_program_drives_the_fleet_without_the_cli(operator, monkeypatch):
    """`tts_ops.fleet.operate.Fleet` over a `Runtime`, no click: it reports, host by host,
    the events ``fleet stop --json`` prints (the keys docs/json.md lists), then each host's
    release; its status is the hosts' rows."""
    from tts_ops.fleet.operate import Fleet
    from tts_ops.runtime import Runtime

    monkeypatch.setenv("XDG_RUNTIME_DIR", operator.env["XDG_RUNTIME_DIR"])
    fleet = Fleet(Runtime(config_path=str(operator.cfg),
                          state_dir=operator.env["TTS_OPS_STATE_DIR"]))
    events: list[dict] = []
    fleet.one_by_one("stop", ["stop", "--all"], fleet.hosts(), events.append, parallel=1)
    steps = [(e["fleet_host"], e["event"]) for e in events if e["event"] != "output"]
    assert steps == [("h1", "running"), ("h1", "ok"), ("h2", "running"), ("h2", "ok"),
                     ("h1", "releases"), ("h2", "releases")]
    check("fleet stop", "\n".join(json.dumps(e) for e in events))  # as --json prints them
    rows = fleet.status(fleet.hosts(("h2",)))
    assert rows and {r["fleet_host"] for r in rows} == {"h2"}
    assert {r["name"]: r["state"] for r in rows} == {"tts": "stopped"}
