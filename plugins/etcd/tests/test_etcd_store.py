"""The etcd store beyond the conformance suite: transactions between hosts, the watch
across a lost member, the deploy lock, the seed's API on an etcd URL, bad settings."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from tts_ops.discovery import ServiceHealthMonitor, ServiceRegistry, TTSServiceDiscovery
from tts_ops.discovery.record import InstanceRecord
from tts_ops.errors import ConfigError, OperationFailed
from tts_ops.testing import run_cli

pytestmark = pytest.mark.slow


def store_for(cluster, prefix, node):
    from tts_ops_etcd.options import EtcdOptions
    from tts_ops_etcd.store import EtcdStore

    return EtcdStore(EtcdOptions(endpoints=cluster.endpoints, prefix=prefix, node=node,
                                 lock_ttl=LOCK_TTL))


LOCK_TTL = 3


def rec(rid, port=9000, **kw):
    return InstanceRecord(id=rid, service=rid.split("@")[0].split(":")[0], host="127.0.0.1",
                          port=port, **kw)


def test_two_hosts_changing_one_record_lose_neither_change(cluster, prefix):
    a, b = store_for(cluster, prefix, "host-a"), store_for(cluster, prefix, "host-b")
    a.register(rec("svc"))
    rid = "svc:host-a"
    weights, healths = list(range(1, 41)), ["warning", "passing"] * 20

    def set_weights():
        for w in weights:
            a.update(rid, weight=w)

    def set_healths():
        for h in healths:
            b.update(rid, health=h)

    threads = [threading.Thread(target=set_weights), threading.Thread(target=set_healths)]
    start = a.last_seq()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = b.get(rid)
    assert (final.weight, final.health) == (weights[-1], healths[-1])
    # every change is one revision of its own, and each one carries the other's last value
    changes = a.changes(start)
    assert len(changes) == len(weights) + len(healths)
    assert [c["record"]["weight"] for c in changes if c["kind"] == "weight"] == weights


def test_same_service_on_two_hosts_is_two_instances(cluster, prefix):
    a, b = store_for(cluster, prefix, "host-a"), store_for(cluster, prefix, "host-b")
    a.register(rec("tts-primary", port=9000))
    b.register(rec("tts-primary", port=9001))
    assert [r.id for r in a.list()] == ["tts-primary:host-a", "tts-primary:host-b"]
    assert a.get("tts-primary").port == 9000 and b.get("tts-primary").port == 9001
    assert a.get("tts-primary:host-b").port == 9001  # another host's, by its full id
    registry = ServiceRegistry(store=a)
    assert registry.is_local("tts-primary") and registry.is_local("tts-primary:host-a")
    assert not registry.is_local("tts-primary:host-b")
    a.deregister("tts-primary")
    assert [r.id for r in b.list()] == ["tts-primary:host-b"]


def test_the_watch_resumes_after_its_member_dies_with_no_change_lost_or_twice(cluster,
                                                                              prefix):
    writer = store_for(cluster, prefix, "w")
    reader = store_for(cluster, prefix, "r")
    since = reader.last_seq()
    seen: list[dict] = []
    stop = threading.Event()

    def follow():
        for change in reader.follow(since, None, stop.is_set):
            seen.append(change)

    thread = threading.Thread(target=follow)
    thread.start()
    try:
        writer.register(rec("svc@a"))
        for w in range(1, 11):
            writer.update("svc@a", weight=w)
            if w == 5:  # the member the reader's watch is connected to, first endpoint
                cluster.kill(0)
        writer.deregister("svc@a")
        deadline = time.monotonic() + 15
        while len(seen) < 12 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(5)
    assert [c["kind"] for c in seen] == ["registered", *["weight"] * 10, "deregistered"]
    assert [c["record"]["weight"] for c in seen[1:11]] == list(range(1, 11))
    assert len({c["seq"] for c in seen}) == 12


def test_the_deploy_lock_holds_across_hosts_and_dies_with_its_holder(cluster, prefix):
    a, b = store_for(cluster, prefix, "host-a"), store_for(cluster, prefix, "host-b")
    holder = {"pid": 4242, "since": time.time(), "cmd": "tts-ops deploy tts-a"}
    with a.deploy_lock("tts-a", holder):
        with pytest.raises(OperationFailed) as err, b.deploy_lock("tts-a", {"pid": 1}):
            pass
        assert "another deploy is in progress on host-a (pid 4242" in str(err.value)
        with b.deploy_lock("tts-b", {"pid": 1}):  # another service: free
            pass
    with b.deploy_lock("tts-a", {"pid": 1}):  # released
        pass
    # a holder killed with SIGKILL: the lock goes with its lease
    code = (f"import sys, time; sys.path[:0] = {sys.path!r}\n"
            "from tts_ops_etcd.options import EtcdOptions\n"
            "from tts_ops_etcd.store import EtcdStore\n"
            f"s = EtcdStore(EtcdOptions(endpoints={cluster.endpoints!r}, prefix={prefix!r},"
            f" node='host-c', lock_ttl={LOCK_TTL}))\n"
            "s.deploy_lock('tts-a', {'pid': 7}).__enter__(); print('held', flush=True)\n"
            "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(OperationFailed, match="on host-c"), b.deploy_lock("tts-a", {}):
            pass
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + LOCK_TTL + 3
        while True:
            try:
                with b.deploy_lock("tts-a", {}):
                    break
            except OperationFailed:
                assert time.monotonic() < deadline, "the lock outlived its holder's lease"
                time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait()


def test_the_seed_api_works_unchanged_on_an_etcd_url(cluster, prefix):
    import http.server

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        registry = ServiceRegistry(cluster.url(prefix))
        registry.register_service({"id": "tts-primary", "host": "127.0.0.1", "port": port})
        registry.register_service({"id": "tts-backup", "host": "127.0.0.1", "port": 1,
                                   "weight": 0})
        found = registry.find_services(service_type="text-to-speech", healthy_only=True)
        assert sorted(r.service for r in found) == ["tts-backup", "tts-primary"]
        assert registry.heartbeat(found[0].id) is True
        assert registry.cleanup_stale_services() == []
        assert TTSServiceDiscovery(registry).get_endpoint() == f"http://127.0.0.1:{port}"
        monitor = ServiceHealthMonitor(registry, unhealthy_threshold=1)
        outcomes = {o.id.split(":")[0]: o for o in monitor.run_once()}
        assert outcomes["tts-primary"].ok and not outcomes["tts-backup"].ok
        assert outcomes["tts-backup"].new == "critical"
        assert registry.get(outcomes["tts-backup"].id).health == "critical"
    finally:
        server.shutdown()


@pytest.mark.parametrize(("url", "message"), [
    ("etcd://", "use etcd://HOST:PORT"),
    ("etcd://127.0.0.1:2379/bad prefix", "prefix: "),
    ("etcd://127.0.0.1:99999", "endpoints.0: has no valid port"),
])
def test_a_bad_etcd_url_is_one_line(url, message):
    with pytest.raises(ConfigError, match=message):
        ServiceRegistry(url)


@pytest.mark.parametrize(("discovery", "message"), [
    ({"registry": "etcd", "endpoints": ["ftp://x:1"]},
     "discovery.endpoints[0]: must be http://HOST:PORT or https://HOST:PORT (got 'ftp://x:1')"),
    ({"registry": "etcd", "endpoints": []}, "discovery.endpoints: "),
    ({"registry": "etcd", "password": "hunter2"}, "discovery.password: "),
    ({"registry": "etcd", "endpoints": ["http://u:p@127.0.0.1:2379"]}, "user and password_file"),
    ({"registry": "etcd", "node": "Web 1"}, "discovery.node: "),
    ({"registry": "file", "endpoints": ["http://127.0.0.1:2379"]},
     "discovery.endpoints: not a field of the 'file' registry"),
    ({"registry": "consul"}, "discovery.registry: no installed plugin provides"),
])
def test_bad_discovery_settings_are_one_line_naming_the_field(tmp_path, discovery, message):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"discovery": discovery,
                               "services": [{"name": "a", "command": ["true"]}]}))
    out = run_cli(["-c", str(cfg), "--state-dir", str(tmp_path / "st"), "config", "validate"])
    assert out.exit_code == 2, out.output
    assert message in out.stderr and "hunter2" not in out.stderr
    assert "Traceback" not in out.stderr


BAD_VALUES = {
    "garbage": "not json{",
    "a list": "[1,2]",
    "no record": json.dumps({"kind": "registered", "ts": 1.0}),
    "a computed field": json.dumps({"kind": "registered", "ts": 1.0, "record": {
        "id": "tts:evil", "service": "tts", "host": "127.0.0.1", "port": 9,
        "effective_health": "passing"}}),
    "a bad host": json.dumps({"kind": "registered", "ts": 1.0, "record": {
        "id": "tts:evil", "service": "tts", "host": "-oProxyCommand=x", "port": 9}}),
    "too large": json.dumps({"kind": "registered", "ts": 1.0, "record": {
        "id": "tts:big", "service": "tts", "host": "127.0.0.1", "port": 9,
        "labels": {"x": "y" * 1_400_000}}}),
}


def etcdctl_put(cluster, key: str, value: str) -> None:
    """`etcdctl put KEY` with the value on stdin (1.4 MB is past an argv's limit)."""
    import os

    subprocess.run(["etcdctl", "--endpoints", ",".join(cluster.endpoints), "put", key],
                   input=value, text=True, check=True, capture_output=True,
                   env={**os.environ, "ETCDCTL_API": "3"})


@pytest.mark.parametrize("shape", list(BAD_VALUES))
def test_a_malformed_key_leaves_list_resolve_watch_and_clients_working(cluster, prefix,
                                                                       tmp_path, shape):
    """`etcdctl put /tts-ops/instances/tts/evil:x 'not json{'` (and each other shape) broke
    discovery list, resolve, cleanup, watch and every client's get_endpoint(), on every
    host: the registry is untrusted input, and a bad key is skipped with one warning."""
    good = store_for(cluster, prefix, "h1")
    good.register(rec("tts", port=9001))
    etcdctl_put(cluster, f"{prefix}/instances/tts/evil:x", BAD_VALUES[shape])
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"discovery": {"registry": "etcd", "endpoints":
                                             cluster.endpoints, "prefix": prefix,
                                             "node": "h1"}, "services": [
        {"name": "tts", "command": ["/bin/true"], "port": 9001}]}))
    base = [sys.executable, "-m", "tts_ops", "-c", str(cfg), "--state-dir",
            str(tmp_path / "s")]
    for args in (["discovery", "list", "--json"], ["discovery", "resolve", "tts"],
                 ["discovery", "cleanup"]):
        done = subprocess.run([*base, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (args, done.stderr)
        assert "Traceback" not in done.stderr
        warnings = [ln for ln in done.stderr.splitlines() if "skipped" in ln]
        assert len(warnings) == 1 and "evil:x" in warnings[0], done.stderr
    listed = json.loads(subprocess.run([*base, "discovery", "list", "--json"],
                                       capture_output=True, text=True).stdout)
    assert [r["id"] for r in listed] == ["tts:h1"]
    registry = ServiceRegistry(cluster.url(prefix))
    assert TTSServiceDiscovery(registry).get_endpoint() == "http://127.0.0.1:9001"
    # a watch skips it too: a change after it still arrives
    since = good.last_seq()
    etcdctl_put(cluster, f"{prefix}/instances/tts/evil:y", BAD_VALUES[shape])
    good.update("tts", weight=40)
    changes = good.changes(since)
    assert [c["id"] for c in changes] == ["tts:h1"] and changes[0]["record"]["weight"] == 40


def test_a_weight_survives_its_record_expiring(cluster, prefix):
    """A partition longer than the ttl: the lease ran out, the heartbeat registered the
    record again from its spec (a blue_green slot's initial weight, 0), and resolve found
    no instance with weight > 0 until the next deploy. The weight set is kept."""
    host = store_for(cluster, prefix, "h1")
    spec = rec("tts@green", port=9002, ttl=2, weight=0, release="r1")
    host.register(spec)
    host.update("tts@green", weight=100)  # the deploy's switch
    # no keep-alive for longer than the ttl (the host cut off): etcd deletes the record
    deadline = time.monotonic() + 15
    while host.get("tts@green") is not None:
        assert time.monotonic() < deadline, "the record outlived its lease"
        time.sleep(0.2)
    ok, change = host.heartbeat("tts@green", record=spec)  # back: registered again
    assert not ok and change is not None
    assert host.get("tts@green").weight == 100
    # a new incarnation (another release, or registered anew) starts from its own weight
    assert host.heartbeat("tts@green", record=spec)[0] is True
    host.deregister("tts@green")
    host.heartbeat("tts@green", record=spec)
    assert host.get("tts@green").weight == 0
    other = rec("tts@green", port=9002, ttl=2, weight=0, release="r2")
    host.update("tts@green", weight=100)
    host.deregister("tts@green")
    host.register(other)
    assert host.get("tts@green").weight == 0


def test_a_member_that_does_not_answer_costs_one_command_its_timeout_not_every_one(
        cluster, prefix, tmp_path, monkeypatch):
    """The first endpoint accepts connections and never answers (a hung member). The first
    command waits for it, then goes on; the next commands (new processes, here new
    clients) try it last: it sees no connection from them while the others answer."""
    import socket

    from tts_ops_etcd.options import EtcdOptions
    from tts_ops_etcd.store import EtcdStore

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)
    accepted = []

    def accept():
        while True:
            try:
                conn, _ = hung.accept()
            except OSError:
                return
            accepted.append(conn)  # kept open, never answered

    threading.Thread(target=accept, daemon=True).start()
    endpoints = [f"http://127.0.0.1:{hung.getsockname()[1]}", *cluster.endpoints]
    options = EtcdOptions(endpoints=endpoints, prefix=prefix, node="n1", timeout=0.5)
    try:
        assert EtcdStore(options).list() == []
        first = len(accepted)
        assert first >= 1
        saved = json.loads((tmp_path / "cache" / "tts-ops" / "etcd-down.json").read_text())
        assert list(saved) == [endpoints[0]]
        for _ in range(3):
            assert EtcdStore(options).list() == []
        assert len(accepted) == first
    finally:
        hung.close()
        for conn in accepted:
            conn.close()
