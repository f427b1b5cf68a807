"""Two hosts on one etcd cluster: two state dirs with the manual backend, services on
127.0.0.2 and 127.0.0.3, the real ``tts-ops`` CLI in subprocesses, a real 3-member
cluster. Discovery across hosts, a member down, a host killed, etcd gone and back."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from tts_ops.testing import DUMMY, free_port, read_one_line_then_leave, wait_for

pytestmark = pytest.mark.slow

TTL = 3


class Host:
    def __init__(self, root, name, ip, port, cluster, prefix):
        self.name, self.ip, self.port = name, ip, port
        self.dir = root / name
        self.dir.mkdir()
        self.cfg = self.dir / "tts.json"
        self.cfg.write_text(json.dumps({
            "discovery": {"registry": "etcd", "endpoints": cluster.endpoints,
                          "prefix": prefix, "node": name, "ttl": TTL},
            "services": [{"name": "tts-primary", "host": ip, "port": port, "notify": True,
                          "process_manager": "manual",
                          "restart_delay": 0,
                          "command": [*DUMMY, "--host", ip, "--port", str(port)]}]}))
        self.env = {**os.environ, "TTS_OPS_STATE_DIR": str(self.dir / "state"),
                    "TTS_OPS_CONFIG": str(self.cfg)}

    def cli(self, *args, check=True):
        done = subprocess.run([sys.executable, "-m", "tts_ops", *args], env=self.env,
                              capture_output=True, text=True, timeout=60)
        if check:
            assert done.returncode == 0, done.stderr
        return done

    def listed(self):
        return {r["id"]: r for r in json.loads(self.cli("discovery", "list", "--json").stdout)}

    def processes(self):
        """The host's supervisor and everything under it."""
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            if any(str(self.dir) in part for part in proc.info["cmdline"] or []):
                found.append(proc)
                found += proc.children(recursive=True)
        return found

    def kill(self):
        for proc in self.processes():
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass


@pytest.fixture
def hosts(tmp_path, cluster, prefix):
    port = free_port()
    pair = [Host(tmp_path, "host-a", "127.0.0.2", port, cluster, prefix),
            Host(tmp_path, "host-b", "127.0.0.3", port, cluster, prefix)]
    yield pair
    for host in pair:
        host.cli("stop", "--all", check=False)
        host.kill()


RECORDER = """
import json, os
from tts_ops import hookimpl

@hookimpl
def tts_ops_registry_changed(change):
    with open(os.environ["RECORD_TO"], "a") as fh:
        fh.write(json.dumps([change["kind"], change["id"]]) + "\\n")
"""


def recorder_plugin(root):
    """A real entry-point plugin (a dist-info on the path) that writes every
    tts_ops_registry_changed it gets to $RECORD_TO."""
    site = root / "site"
    (site / "recorder-1.0.dist-info").mkdir(parents=True)
    (site / "recorder_plugin.py").write_text(RECORDER)
    (site / "recorder-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: recorder\nVersion: 1.0\n")
    (site / "recorder-1.0.dist-info" / "entry_points.txt").write_text(
        "[tts_ops]\nrecorder = recorder_plugin\n")
    return site


class Watcher:
    """``tts-ops discovery watch --json`` on a host, its lines timed as they arrive, with a
    plugin that records the registry hooks the watch fires."""

    def __init__(self, host):
        site = recorder_plugin(host.dir)
        self.record = host.dir / "hooks.jsonl"
        env = {**host.env, "PYTHONPATH": str(site), "RECORD_TO": str(self.record)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tts_ops", "discovery", "watch", "--json", "--from-start"],
            env=env, stdout=subprocess.PIPE, text=True)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put((time.monotonic(), json.loads(line)))

    def until(self, kind, rid, timeout):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no {kind} of {rid} within {timeout} s"
            try:
                at, change = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if change["kind"] == kind and change["id"] == rid:
                return at, change

    def close(self):
        self.proc.kill()
        self.proc.wait()


def test_both_hosts_are_listed_and_resolved_from_either(hosts, cluster):
    a, b = hosts
    a.cli("start")
    b.cli("start")
    for host in hosts:
        records = wait_for(lambda h=host: len(h.listed()) == 2 and h.listed(), timeout=10,
                           message="both instances listed")
        assert set(records) == {"tts-primary:host-a", "tts-primary:host-b"}
        assert {r["url"] for r in records.values()} == {f"http://127.0.0.2:{a.port}",
                                                        f"http://127.0.0.3:{b.port}"}
        assert all(r["effective_health"] == "passing" for r in records.values())
    resolved = {b.cli("discovery", "resolve", "tts-primary").stdout.strip() for _ in range(20)}
    assert resolved == {f"http://127.0.0.2:{a.port}", f"http://127.0.0.3:{b.port}"}

    # one member down (the one each client talks to first): nothing changes, and the
    # heartbeats keep both records past their ttl
    cluster.kill(0)
    beat_until = time.monotonic() + TTL + 1.5
    while time.monotonic() < beat_until:
        assert set(a.listed()) == {"tts-primary:host-a", "tts-primary:host-b"}
        time.sleep(0.5)
    # a host's own stop deregisters only its own instance
    b.cli("stop", "tts-primary")
    assert set(a.listed()) == {"tts-primary:host-a"}


def test_a_killed_host_leaves_passing_within_ttl_seen_by_the_other_host(hosts):
    a, b = hosts
    a.cli("start")
    b.cli("start")
    wait_for(lambda: len(a.listed()) == 2, timeout=10, message="both instances listed")
    watcher = Watcher(a)
    try:
        # the watcher follows once it has replayed the history: both registrations
        watcher.until("registered", "tts-primary:host-a", timeout=10)
        watcher.until("registered", "tts-primary:host-b", timeout=10)
        killed_at = time.monotonic()
        b.kill()
        at, change = watcher.until("stale_removed", "tts-primary:host-b", timeout=TTL + 2)
        assert at - killed_at <= TTL + 2
        assert change["record"]["host"] == "127.0.0.3"
        assert set(a.listed()) == {"tts-primary:host-a"}
        # host-a's plugins heard of host-b's death through the watch, and of nothing
        # replayed (both registrations were history when the watch started)
        fired = wait_for(lambda: watcher.record.exists() and [
            json.loads(line) for line in watcher.record.read_text().splitlines()],
            timeout=5, message="the hook fired by the watch")
        assert fired == [["stale_removed", "tts-primary:host-b"]]
    finally:
        watcher.close()


def test_an_etcd_outage_is_one_line_and_heartbeats_resume(hosts, cluster):
    a, b = hosts
    a.cli("start")
    wait_for(lambda: "tts-primary:host-a" in a.listed(), timeout=10, message="registered")
    cluster.stop()
    try:
        down = a.cli("discovery", "list", check=False)
        assert down.returncode == 1
        lines = down.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("tts-ops: error: etcd: no endpoint answered")
        assert "connection refused; supervised services keep running" in lines[0]
        assert "Traceback" not in down.stderr
        # a start goes ahead with one warning (its heartbeats register it later); a deploy,
        # which needs the cluster's lock, refuses in one line before touching anything
        started = b.cli("start")
        assert started.stderr.strip().splitlines() == [
            started.stderr.strip().splitlines()[0]]
        assert "tts-primary: not registered in discovery: etcd: no endpoint answered" \
            in started.stderr
        deploy = a.cli("deploy", "tts-primary", check=False)
        assert deploy.returncode == 1 and len(deploy.stderr.strip().splitlines()) == 1
        assert "etcd: no endpoint answered" in deploy.stderr
        # the service is supervised and serving meanwhile, past several heartbeats
        time.sleep(TTL)  # an outage longer than the ttl: heartbeats fail for its length
        status = json.loads(a.cli("status", "--json").stdout)
        assert [s["state"] for s in status] == ["running"]
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.2:{a.port}/health", timeout=2) as r:
            assert r.status == 200
    finally:
        cluster.start()
    records = wait_for(lambda: len(a.listed()) == 2 and a.listed(), timeout=TTL + 10,
                       message="both records back (host-b's first)")
    assert records["tts-primary:host-a"]["effective_health"] == "passing"
    assert records["tts-primary:host-b"]["effective_health"] == "passing"
    # and it is kept alive, not just there: still listed after another full ttl
    time.sleep(TTL + 1)
    assert "tts-primary:host-a" in a.listed()


def test_a_deploy_on_one_host_holds_the_service_for_every_host(hosts, prefix, cluster):
    from tts_ops_etcd.options import EtcdOptions
    from tts_ops_etcd.store import EtcdStore

    a, _b = hosts
    a.cli("start")
    other = EtcdStore(EtcdOptions(endpoints=cluster.endpoints, prefix=prefix, node="host-b"))
    with other.deploy_lock("tts-primary", {"pid": 4242, "since": time.time(),
                                           "cmd": "tts-ops deploy tts-primary"}):
        out = a.cli("deploy", "tts-primary", check=False)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        out.stderr.strip().splitlines()[0]]
    assert "tts-primary: another deploy is in progress on host-b (pid 4242" in out.stderr
    history = a.cli("deploy", "history", "tts-primary", "--json", check=False)
    assert json.loads(history.stdout or "[]") == []  # nothing was started or recorded


def test_a_watch_whose_reader_leaves_ends_though_its_stream_is_idle(hosts):
    a, _b = hosts
    a.cli("discovery", "register", "--id", "ext", "--host", "127.0.0.1", "--port", "9100")
    line, code, stderr = read_one_line_then_leave(
        [sys.executable, "-m", "tts_ops", "discovery", "watch", "--from-start"], a.env)
    assert b"registered ext:host-a" in line
    # its reader thread is inside an idle etcd stream: closing must not wait for it
    assert code == 1
    assert stderr.strip().splitlines() == ["tts-ops: output closed before the command finished"]
