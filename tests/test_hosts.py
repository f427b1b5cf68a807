"""Three hosts as Linux network namespaces on a bridge, one etcd member in each: what other
hosts read from the shared registry is an address they reach.

Each host runs the real CLI in its namespace with a state dir of its own; the reference
server (espeak) deploys with ``socket: inherit`` on ``0.0.0.0:9000``; the third host runs
a ``router_scope: cluster`` HAProxy. Loopback in a record is as unreachable from another
namespace as from another machine, so these tests fail where aliases of 127.0.0.1 pass.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from tts_ops.testing import wait_for

pytestmark = pytest.mark.slow

TTL = 3
PLUGINS = "manual,strategies,etcd,haproxy"


class Node:
    """One host: its namespace, config and state dir, and the CLI run inside it."""

    def __init__(self, host, root, cluster, prefix, service):
        self.host, self.name, self.ip = host, host.name, host.ip
        home = root / host.name
        home.mkdir()
        self.cfg = home / "tts.json"
        self.discovery = {"registry": "etcd", "endpoints": cluster.endpoints,
                          "prefix": prefix, "node": host.name, "ttl": TTL}
        self.write(service)
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("TTS_OPS_")},
                    "TTS_OPS_STATE_DIR": str(home / "state"), "TTS_OPS_CONFIG": str(self.cfg),
                    "TTS_OPS_PLUGINS": PLUGINS}

    def write(self, service, **discovery):
        self.cfg.write_text(json.dumps({"discovery": {**self.discovery, **discovery},
                                        "services": [service]}))

    def cli(self, *args, check=True):
        done = self.host.run([sys.executable, "-m", "tts_ops", *args], env=self.env,
                             timeout=300)
        assert not check or done.returncode == 0, (self.name, args, done.stdout, done.stderr)
        return done

    def listed(self):
        return json.loads(self.cli("discovery", "list", "--json").stdout)

    def get(self, url):
        """``url`` fetched from inside this host: the status code, or the error."""
        code = ("import sys, urllib.request\n"
                "try:\n"
                "    print(urllib.request.urlopen(sys.argv[1], timeout=5).status)\n"
                "except Exception as exc:\n"
                "    print(type(exc).__name__, exc)\n")
        return self.host.run([sys.executable, "-c", code, url], timeout=30).stdout.strip()


SERVICE = {"name": "tts", "host": "0.0.0.0", "port": 9000, "engine_type": "espeak",
           "workers": 1, "process_manager": "manual",
           "deploy": {"drain_seconds": 1.0, "progress_deadline_seconds": 60}}


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    from tts_ops.testing.netns import Network, require_netns
    from tts_ops_etcd.testing import EtcdCluster, require_etcd

    require_netns()
    require_etcd()
    with Network(3) as net, EtcdCluster(tmp_path_factory.mktemp("etcd"),
                                        hosts=net.hosts) as cluster:
        yield net, cluster


@pytest.fixture
def nodes(network, tmp_path):
    net, cluster = network
    prefix = f"/t-{uuid.uuid4().hex[:12]}"
    made = [Node(h, tmp_path, cluster, prefix, SERVICE) for h in net.hosts]
    yield made
    for node in made:
        node.cli("stop", "--all", check=False)


def _passing(records):
    return [r for r in records if r["health"] == "passing"]


def test_deployed_records_name_addresses_another_host_reaches(nodes):
    from tts_ops.testing.load import PinnedLoad, require_hey
    from tts_ops_haproxy.testing import require_haproxy, who

    require_hey()
    require_haproxy()
    h1, h2, h3 = nodes
    for node in (h1, h2):
        node.cli("deploy", "--strategy", "blue_green")
    # the third host only routes, for the cluster: no instance of its own
    h3.write({**SERVICE, "router": "haproxy", "router_scope": "cluster", "instances": 0})
    refused = h3.cli("deploy", check=False)
    assert refused.returncode == 2 and "this host only routes it" in refused.stderr
    h3.cli("start")
    watch = h3.host.popen([sys.executable, "-m", "tts_ops", "discovery", "watch"],
                          env=h3.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    try:
        records = _passing(h3.listed())
        assert {r["host"] for r in records} == {h1.ip, h2.ip}, records
        for record in records:  # from another host than its own
            reader = h2 if record["host"] == h1.ip else h1
            assert reader.get(f"http://{record['host']}:{record['port']}/health") == "200"
        wait_for(lambda: {h.split(":")[-1] for h in who(h3.ip, 9000, 60)} == {"h1", "h2"},
                 timeout=30, message="the cluster router to serve from every host")

        url = f"http://{h3.ip}:9000/synthesize"
        with PinnedLoad(url, connections=2, rate=10) as load:
            for node in (h1, h2):  # each host deploys in turn under the load
                node.cli("deploy", "--strategy", "blue_green")
        assert load.result.total > 0 and load.result.clean, load.result.summary()

        after = _passing(h3.listed())
        assert {r["host"] for r in after} == {h1.ip, h2.ip}, after
        assert {r["id"].split(":")[0] for r in after} == {"tts@green"}
        for record in after:
            assert h3.get(f"http://{record['host']}:{record['port']}/health") == "200"
        wait_for(lambda: {h.split(":")[-1] for h in who(h3.ip, 9000, 60)} == {"h1", "h2"},
                 timeout=30,
                 message="the cluster router to serve from every host after the deploys")
        status = json.loads(h3.cli("status", "--json").stdout)
        assert [r["name"] for r in status] == ["tts-router"], status
    finally:
        watch.kill()
        watch.communicate()


def test_an_advertise_that_is_no_address_of_the_host_is_one_line(nodes):
    h1 = nodes[0]
    checked = h1.cli("config", "validate")
    assert f"tts: its records in the shared registry carry {h1.ip}" in checked.stdout
    plan = h1.cli("deploy", "--dry-run", "--strategy", "blue_green")
    assert f"records: tts@blue at {h1.ip}:" in plan.stdout, plan.stdout
    # a service bound to loopback alone is said to be out of the other hosts' reach
    h1.write({**SERVICE, "host": "127.0.0.1", "socket": "none"})
    warned = h1.cli("config", "validate")
    assert "tts: it listens on 127.0.0.1 only" in warned.stderr, warned.stderr
    h1.write(SERVICE, advertise="10.255.255.1")
    done = h1.cli("deploy", "--strategy", "blue_green", check=False)
    assert done.returncode != 0
    assert "discovery.advertise: 10.255.255.1 is not an address of this host" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    h1.write(SERVICE, advertise="eth0")  # an interface: its address
    h1.cli("deploy", "--strategy", "blue_green")
    [record] = _passing(h1.listed())
    assert record["host"] == h1.ip


def test_a_deploy_paused_past_its_lock_ttl_is_rolled_back_not_finished_beside_another(
        nodes):
    """Host 1's deploy holds the service's etcd lock; it is paused (SIGSTOP) past
    ``lock_ttl``, host 2 takes the lock and deploys; when host 1 resumes it finds its lock
    lost and rolls back: the two deploys never both finish."""
    import signal

    h1, h2, _h3 = nodes
    for node in (h1, h2):
        node.write(SERVICE, lock_ttl=2)
        node.cli("deploy", "--strategy", "blue_green")
    journal = h1.env["TTS_OPS_STATE_DIR"] + "/deploy/tts.journal.json"
    first = h1.host.popen([sys.executable, "-m", "tts_ops", "deploy", "--strategy",
                           "blue_green"], env=h1.env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: os.path.exists(journal) or first.poll() is not None, timeout=60,
                 message="host 1's deploy to hold its lock and start")
        os.kill(first.pid, signal.SIGSTOP)
        # host 2 gets the lock once host 1's lease has run out, not before
        def host_2_deploys():
            done = h2.cli("deploy", "--strategy", "blue_green", check=False)
            if done.returncode != 0 and "another deploy is in progress" not in done.stderr:
                pytest.fail(done.stderr)
            return done if done.returncode == 0 else None

        second = wait_for(host_2_deploys, timeout=30, message="host 2 to take the lock")
        assert "deployed" in second.stdout
    finally:
        os.kill(first.pid, signal.SIGCONT)
        out, err = first.communicate(timeout=120)
    assert first.returncode != 0, out
    assert "its deploy lock was lost" in err and "Traceback" not in err, err
    history = json.loads(h1.cli("deploy", "history", "--json").stdout)
    assert history[-1]["result"] == "rolled_back", history[-1]
    assert "lock was lost" in history[-1]["reason"]
    # host 1 still serves its previous release, on its address
    assert h1.get(f"http://{h1.ip}:9000/health") == "200"


def test_a_partition_longer_than_the_ttl_keeps_every_weight(nodes):
    """Host 1's link goes down until the other hosts see its record expire (its etcd member
    is cut off with it), and the registry's copy of the weights is deleted meanwhile; back
    up, its heartbeat registers the record again with the weight the deploy set (100, from
    the host's state dir), not the initial weight a blue_green slot starts from (0)."""
    h1, h2, _h3 = nodes
    for _ in range(2):  # blue, then green: the serving slot started at weight 0
        h1.cli("deploy", "--strategy", "blue_green")

    def record():
        return next((r for r in h2.listed() if r["id"] == "tts@green:h1"), None)

    assert record()["weight"] == 100
    h1.host.down()
    try:
        wait_for(lambda: record() is None, timeout=30, message="host 1's record to expire")
        # and the registry lost what it kept of the weights (a cluster rebuilt from
        # nothing): the host's own copy, in its state dir, still has them
        gone = subprocess.run(["etcdctl", "--endpoints", ",".join(h2.discovery["endpoints"]),
                               "del", "--prefix", h2.discovery["prefix"] + "/weights/"],
                              capture_output=True, text=True, timeout=30)
        assert gone.returncode == 0 and int(gone.stdout.strip() or 0) >= 1, gone
    finally:
        h1.host.up()
    back = wait_for(lambda: (r := record()) is not None and r["health"] == "passing" and r,
                    timeout=30, message="host 1's record to come back")
    assert back["weight"] == 100, back
    assert h2.get(f"http://{back['host']}:{back['port']}/health") == "200"


def test_two_hosts_given_one_node_are_told_not_overwritten(nodes):
    """Cloned machines that kept one ``discovery.node``: the second host's start and
    deploy are refused with one line naming both owners; the first host's record stays."""
    h1, h2, _h3 = nodes
    h1.cli("deploy", "--strategy", "blue_green")
    h2.discovery["node"] = "h1"
    h2.write(SERVICE)
    for args in (("deploy", "--strategy", "blue_green"), ("start",)):
        done = h2.cli(*args, check=False)
        assert done.returncode != 0, done.stdout
        assert "share discovery.node 'h1': give each its own" in done.stderr, done.stderr
        assert h1.env["TTS_OPS_STATE_DIR"] in done.stderr  # the other owner, by state dir
        assert h2.env["TTS_OPS_STATE_DIR"] in done.stderr
    [record] = _passing(h1.listed())
    assert record["id"] == "tts@blue:h1" and record["host"] == h1.ip
