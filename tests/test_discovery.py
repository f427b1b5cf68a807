"""Service discovery with real processes, real HTTP servers and a real SQLite registry."""

from __future__ import annotations

import http.server
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from tts_ops import hookimpl
from tts_ops.discovery import (
    InstanceRecord,
    NoEndpoint,
    ServiceHealthMonitor,
    ServiceRegistry,
    TTSServiceDiscovery,
)
from tts_ops.errors import ConfigError, OperationFailed
from tts_ops.testing import (
    DUMMY,
    free_port,
    make_host,
    read_one_line_then_leave,
    run_cli,
    wait_for,
)


def rec(i, **kw):
    return InstanceRecord(id=f"svc@{i}", service="svc", host="127.0.0.1", port=20000 + i, **kw)


@pytest.fixture
def registry(tmp_path):
    return ServiceRegistry(tmp_path / "registry.db")


def test_seed_api_register_find_heartbeat_deregister(registry):
    registry.register_service({"id": "tts-a", "host": "127.0.0.1", "port": 9100})
    registry.register_service(rec(1))
    found = registry.find_services(service_type="text-to-speech", healthy_only=True)
    assert {r.id for r in found} == {"tts-a", "svc@1"}
    assert found[0].url.startswith("http://127.0.0.1:")
    assert registry.heartbeat("tts-a") is True
    assert registry.deregister_service("tts-a") is True
    assert registry.deregister_service("tts-a") is False
    assert [r.id for r in registry.find_services()] == ["svc@1"]


def test_ttl_expiry_makes_critical_and_cleanup_removes(registry):
    registry.register_service(rec(1, ttl=0.3))
    registry.register_service(rec(2, ttl=30))
    time.sleep(0.5)
    assert registry.get("svc@1").effective_health() == "critical"
    assert [r.id for r in registry.find_services(healthy_only=True)] == ["svc@2"]
    assert registry.cleanup_stale_services(deregister_after=5) == []  # critical, not yet gone
    assert registry.cleanup_stale_services(deregister_after=0.1) == ["svc@1"]
    assert [r.id for r in registry.find_services()] == ["svc@2"]


def test_heartbeat_re_registers_a_wiped_record(registry, tmp_path):
    record = rec(3)
    registry.register_service(record)
    registry.deregister_service(record.id)
    assert registry.heartbeat(record.id) is False
    assert registry.get(record.id) is None
    assert registry.heartbeat(record.id, record=rec(3)) is False  # not found, but healed
    assert registry.get(record.id) is not None


@pytest.mark.parametrize(("field", "value", "message"), [
    ("id", "../x", "id: invalid instance id"),
    ("id", "Bad Name", "id: invalid instance id"),
    ("port", 70000, "port: must be 1-65535"),
    ("port", "80", "port: must be 1-65535"),
    ("host", "not a host!", "host: "),
    ("weight", 101, "weight: must be 0-100"),
    ("weight", -1, "weight: must be 0-100"),
    ("health", "fine", "health: must be one of"),
    ("ttl", 0, "ttl: must be a positive"),
    ("url", "ftp://x", "url: must start with http"),
    ("colour", "red", "colour: unknown field"),
])
def test_bad_records_are_rejected_naming_the_field(registry, field, value, message):
    data = {"id": "ok", "host": "127.0.0.1", "port": 9000, field: value}
    with pytest.raises(ConfigError, match=message):
        registry.register_service(data)
    assert registry.find_services() == []


def test_a_file_that_is_not_a_registry_is_never_overwritten(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("my precious notes\n")
    with pytest.raises(ConfigError, match="not a tts-ops registry"):
        ServiceRegistry(path)
    assert path.read_text() == "my precious notes\n"
    other = tmp_path / "other.db"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE mine(x)")
    db.commit()
    db.close()
    before = other.read_bytes()
    with pytest.raises(ConfigError, match="SQLite database, but not a tts-ops registry"):
        ServiceRegistry(other)
    assert other.read_bytes() == before


def test_corrupt_registry_is_reported(tmp_path):
    path = tmp_path / "r.db"
    ServiceRegistry(path).register_service(rec(1))
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)
    path.write_bytes(bytes(data))
    for wal in tmp_path.glob("r.db-*"):
        wal.unlink()
    with pytest.raises((ConfigError, OperationFailed)):
        ServiceRegistry(path).find_services()


def test_full_disk_is_a_clear_error_and_keeps_the_previous_state(tmp_path):
    registry = ServiceRegistry(tmp_path / "r.db")
    registry.register_service(rec(1))
    pages = registry.store.db.execute("PRAGMA page_count").fetchone()[0]
    # what a full disk does, without filling one: sqlite may not grow the file
    registry.store.db.execute(f"PRAGMA max_page_count={pages}")
    with pytest.raises(OperationFailed, match="disk is full"):
        for i in range(2, 500):
            registry.register_service(rec(i, labels={"pad": "x" * 2000}))
    assert "svc@1" in {r.id for r in registry.find_services()}


def test_read_only_registry_keeps_previous_state_readable(tmp_path):
    path = tmp_path / "r.db"
    registry = ServiceRegistry(path)
    registry.register_service(rec(1))
    # what a read-only mount does, without needing one: sqlite refuses writes
    registry.store.db.execute("PRAGMA query_only=ON")
    with pytest.raises(OperationFailed, match="read-only"):
        registry.register_service(rec(2))
    assert [r.id for r in registry.find_services()] == ["svc@1"]


WRITER = r"""
import sys, time
from tts_ops.discovery import ServiceRegistry
reg = ServiceRegistry(sys.argv[1])
n, k = int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    reg.heartbeat(f"svc@{(i * 7 + k) % 100}")
print("done", flush=True)
"""


def test_concurrent_heartbeats_from_processes_lose_nothing(registry, tmp_path):
    for i in range(100):
        registry.register_service(rec(i))
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "registry.db"),
                               "300", str(k)]) for k in range(6)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 6
    assert registry.store.beats() == 6 * 300
    assert len(registry.find_services()) == 100


KILLED = r"""
import sys
from tts_ops.discovery import ServiceRegistry, InstanceRecord
reg = ServiceRegistry(sys.argv[1])
i = 0
while True:
    reg.register_service(InstanceRecord(id=f"k@{i}", service="k", host="127.0.0.1",
                                        port=1 + i % 60000))
    print(i, flush=True)
    i += 1
"""


def test_sigkill_mid_write_loses_nothing_committed(tmp_path):
    path = tmp_path / "registry.db"
    ServiceRegistry(path)
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(path)], stdout=subprocess.PIPE,
                            text=True)
    committed = -1
    deadline = time.monotonic() + 30
    while committed < 300 and time.monotonic() < deadline:
        committed = int(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ids = {r.id for r in ServiceRegistry(path).find_services()}
    assert {f"k@{i}" for i in range(committed + 1)} <= ids
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_weighted_choice_follows_weights(registry):
    registry.register_service(rec(1, weight=10))
    registry.register_service(rec(2, weight=90))
    registry.register_service(rec(3, weight=0))
    client = TTSServiceDiscovery(registry, rng=random.Random(42))
    counts = Counter(client.get_endpoint() for _ in range(5000))
    assert set(counts) == {"http://127.0.0.1:20001", "http://127.0.0.1:20002"}
    share = counts["http://127.0.0.1:20002"] / 5000
    assert 0.87 < share < 0.93
    assert client.get_endpoints() == ["http://127.0.0.1:20002", "http://127.0.0.1:20001"]


def test_no_passing_instance_is_a_clear_error(registry):
    registry.register_service(rec(1, health="critical"))
    with pytest.raises(NoEndpoint, match="no passing instance"):
        TTSServiceDiscovery(registry).get_endpoint()


class _Flip(http.server.BaseHTTPRequestHandler):
    healthy = True

    def do_GET(self):
        code = 200 if type(self).healthy else 503
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def do_POST(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"hi")

    def log_message(self, *a):
        pass


def serve(port: int, healthy: bool = True):
    handler = type("Flip", (_Flip,), {"healthy": healthy})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, handler


def test_failover_when_a_connection_is_refused(registry):
    up = free_port()
    down = free_port()
    server, _ = serve(up)
    try:
        registry.register_service(InstanceRecord(id="svc@up", service="svc", host="127.0.0.1",
                                                 port=up, weight=1))
        registry.register_service(InstanceRecord(id="svc@down", service="svc",
                                                 host="127.0.0.1", port=down, weight=100))
        client = TTSServiceDiscovery(registry, rng=random.Random(1))
        for _ in range(20):
            status, _h, body = client.request("POST", "/synthesize", b"{}")
            assert (status, body) == (200, b"hi")
    finally:
        server.shutdown()


def test_health_hysteresis_against_a_flipping_server(registry):
    port = free_port()
    server, handler = serve(port)
    try:
        registry.register_service(InstanceRecord(id="flip", service="flip", host="127.0.0.1",
                                                 port=port))
        changes = []
        mon = ServiceHealthMonitor(registry, timeout=1, healthy_threshold=2,
                                   unhealthy_threshold=3, on_change=changes.append)
        health = lambda: registry.get("flip").health  # noqa: E731
        mon.run_once()
        assert health() == "passing"
        handler.healthy = False
        mon.run_once()
        assert health() == "warning"  # one failure is not enough
        mon.run_once()
        assert health() == "warning"
        mon.run_once()
        assert health() == "critical"  # three in a row
        handler.healthy = True
        mon.run_once()
        assert health() == "warning"  # one success is not enough either
        mon.run_once()
        assert health() == "passing"
        assert [(c.old, c.new) for c in changes] == [("passing", "warning"),
                                                     ("warning", "critical"),
                                                     ("critical", "warning"),
                                                     ("warning", "passing")]
    finally:
        server.shutdown()


def test_monitor_never_passes_an_instance_whose_process_is_gone(registry):
    port = free_port()
    server, _ = serve(port)
    try:
        registry.register_service(InstanceRecord(id="zombie", service="zombie",
                                                 host="127.0.0.1", port=port))
        mon = ServiceHealthMonitor(registry, liveness=lambda recs: {"zombie": False})
        mon.run_once()
        assert registry.get("zombie").health == "critical"
    finally:
        server.shutdown()


class Changes:
    def __init__(self):
        self.seen = []

    @hookimpl
    def tts_ops_registry_changed(self, change):
        self.seen.append((change["kind"], change["id"]))


def test_event_hook_sees_every_change(tmp_path):
    plugin = Changes()
    host = make_host(plugin)
    registry = ServiceRegistry(tmp_path / "r.db", emit=host.emit)
    registry.register_service(rec(1, ttl=0.1))
    registry.set_weight("svc@1", 0)
    registry.set_health("svc@1", "warning")
    time.sleep(0.2)
    registry.cleanup_stale_services(deregister_after=0)
    registry.register_service(rec(2))
    registry.deregister_service("svc@2")
    assert plugin.seen == [("registered", "svc@1"), ("weight", "svc@1"), ("health", "svc@1"),
                           ("stale_removed", "svc@1"), ("registered", "svc@2"),
                           ("deregistered", "svc@2")]


def test_watch_streams_changes_from_another_process(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [{"name": "w", "command": ["true"]}]}))
    env = {**os.environ, "TTS_OPS_STATE_DIR": str(tmp_path / "st"), "TTS_OPS_CONFIG": str(cfg)}
    registry = ServiceRegistry(tmp_path / "st" / "registry.db")
    registry.register_service({"id": "w@old", "host": "127.0.0.1", "port": 9000})
    watcher = subprocess.Popen([sys.executable, "-m", "tts_ops", "discovery", "watch",
                                "--json", "--service", "w", "--from-start"], env=env,
                               stdout=subprocess.PIPE, text=True)
    try:
        # following once the history is out: the change made before it started
        assert json.loads(watcher.stdout.readline())["id"] == "w@old"
        registry.register_service({"id": "other", "host": "127.0.0.1", "port": 9001})
        registry.register_service({"id": "w", "host": "127.0.0.1", "port": 9002})
        registry.set_weight("w", 0)
        lines = [json.loads(watcher.stdout.readline()) for _ in range(2)]
        assert [(c["kind"], c["id"]) for c in lines] == [("registered", "w"), ("weight", "w")]
        assert lines[1]["record"]["weight"] == 0
    finally:
        watcher.kill()
        watcher.wait()


def test_cli_register_list_resolve_deregister(tmp_path):
    base = ["--state-dir", str(tmp_path / "st")]
    out = run_cli([*base, "discovery", "register", "--id", "ext@a", "--host", "127.0.0.1",
                   "--port", "9300", "--label", "zone=a"])
    assert out.exit_code == 0, out.output
    # the file registry is the owner's only, as every file that steers clients
    import stat

    db = tmp_path / "st" / "registry.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in db.parent.glob("registry.db*"))
    assert run_cli([*base, "discovery", "resolve", "ext"]).output.strip() == \
        "http://127.0.0.1:9300"
    rows = json.loads(run_cli([*base, "discovery", "list", "--json"]).stdout)
    assert rows[0]["labels"] == {"zone": "a"} and rows[0]["effective_health"] == "passing"
    bad = run_cli([*base, "discovery", "register", "--id", "ext@a", "--host", "127.0.0.1",
                   "--port", "99999"])
    assert bad.exit_code == 2 and "port: must be 1-65535 (got 99999)" in bad.stderr
    assert run_cli([*base, "discovery", "deregister", "ext@a"]).exit_code == 0
    missing = run_cli([*base, "discovery", "resolve", "ext"])
    assert missing.exit_code == 1 and "no passing instance of ext" in missing.stderr


def test_manual_backend_registers_on_ready_and_heals_after_restart(tmp_path):
    from tts_ops_manual import plugin as manual_plugin

    port = free_port()
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({
        "discovery": {"ttl": 3},
        "services": [{"name": "auto", "port": port, "notify": True, "restart_delay": 0,
                      "command": [*DUMMY, "--port", str(port)], "labels": {"team": "voice"}}]}))
    host = make_host(manual_plugin)
    base = ["-c", str(cfg), "--state-dir", str(tmp_path / "st")]
    registry = ServiceRegistry(tmp_path / "st" / "registry.db")
    try:
        assert run_cli([*base, "start"], host=host).exit_code == 0
        record = registry.get("auto")
        assert record is not None and record.health == "passing" and record.weight == 100
        assert record.labels == {"team": "voice"} and record.meta["backend"] == "manual"
        registry.deregister_service("auto")  # the registry was wiped...
        pid = json.loads(run_cli([*base, "status", "--json"], host=host).stdout)[0]["pid"]
        os.kill(pid, signal.SIGKILL)
        # ...the supervisor marks it critical, restarts it, and its heartbeat re-registers it
        wait_for(lambda: (r := registry.get("auto")) is not None and r.health == "passing",
                 timeout=20, message="re-registration after the restart")
        assert run_cli([*base, "stop"], host=host).exit_code == 0
        assert registry.get("auto") is None
    finally:
        run_cli([*base, "stop", "--force"], host=host)


def test_stopping_takes_the_instance_out_of_rotation_before_the_signal(tmp_path):
    """The registry sees weight 0 while the process still runs (checked from a hook)."""
    from tts_ops_manual import plugin as manual_plugin

    seen = []

    class Spy:
        @hookimpl
        def tts_ops_registry_changed(self, change):
            if change["kind"] == "weight":
                pid = change["record"]["meta"].get("pid")
                seen.append((change["record"]["weight"], pid and os.path.exists(f"/proc/{pid}")))

    port = free_port()
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [{"name": "drain", "port": port, "notify": True,
                                             "command": [*DUMMY, "--port", str(port)]}]}))
    host = make_host(manual_plugin, Spy())
    base = ["-c", str(cfg), "--state-dir", str(tmp_path / "st")]
    assert run_cli([*base, "start"], host=host).exit_code == 0
    assert run_cli([*base, "stop"], host=host).exit_code == 0
    assert seen == [(0, True)]


@pytest.mark.parametrize("how", ["full", "read-only"])
def test_the_registry_stays_readable_on_a_full_or_read_only_disk(tmp_path, how):
    from tts_ops.testing import fill_disk, run_cli, tiny_disk

    with tiny_disk(tmp_path) as disk:
        base = ["--state-dir", str(disk / "state"), "discovery"]
        assert run_cli([*base, "register", "--id", "a", "--host", "127.0.0.1", "--port",
                        "9000"]).exit_code == 0
        if how == "full":
            fill_disk(disk)
        else:
            import gc

            gc.collect()  # the in-process CLI's registry connection: closed, or it is busy
            subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        listed = run_cli([*base, "list", "--all", "--json"])
        assert listed.exit_code == 0, listed.output
        assert [r["id"] for r in json.loads(listed.stdout)] == ["a"]
        refused = run_cli([*base, "register", "--id", "b", "--host", "127.0.0.1", "--port",
                           "9001"])
        assert "Traceback" not in refused.output
        # a full disk may still take a small write into pages SQLite already holds
        if how == "read-only" or refused.exit_code != 0:
            assert refused.exit_code == 1
            assert "the previous state is unchanged" in refused.stderr


def test_watch_ends_when_its_reader_leaves_though_nothing_changes(tmp_path):
    """``discovery watch | head -1``: the watch has nothing more to write, yet it sees the
    pipe's reader go, and ends with one line."""
    env = {**os.environ, "TTS_OPS_STATE_DIR": str(tmp_path / "st")}
    registry = ServiceRegistry(tmp_path / "st" / "registry.db")
    registry.register_service({"id": "w", "host": "127.0.0.1", "port": 9000})
    line, code, stderr = read_one_line_then_leave(
        [sys.executable, "-m", "tts_ops", "discovery", "watch", "--from-start"], env)
    assert line.split()[1:3] == [b"registered", b"w"]
    assert code == 1
    assert stderr.strip().splitlines() == ["tts-ops: output closed before the command finished"]


# --- the heartbeat keeper (systemd and supervisor run it beside a service) ---------

def _keeper_spec(tmp_path, port, health_type="tcp", threshold=2):
    from tts_ops.discovery.keeper import write_spec

    record = InstanceRecord(id="kept", service="kept", host="127.0.0.1", port=port, ttl=3)
    spec = {"registry": {"name": "file", "location": str(tmp_path / "reg.db"),
                         "record": record.__dict__, "interval": 0.2},
            "health": {"type": health_type, "host": "127.0.0.1", "port": port, "url": None,
                       "timeout": 0.5},
            "unhealthy_threshold": threshold}
    return write_spec(tmp_path / "state", "kept", spec)


@pytest.mark.slow
def test_the_keeper_beats_while_healthy_marks_critical_and_ends_on_sigterm(tmp_path):
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    path = _keeper_spec(tmp_path, port)
    assert path.stat().st_mode & 0o777 == 0o600
    registry = ServiceRegistry(tmp_path / "reg.db")
    keeper = subprocess.Popen([sys.executable, "-m", "tts_ops.discovery.keeper", str(path)],
                              stderr=subprocess.PIPE, text=True)
    try:
        first = wait_for(lambda: registry.get("kept"), timeout=10, message="registered")
        wait_for(lambda: registry.get("kept").last_heartbeat > first.last_heartbeat,
                 timeout=10, message="a second heartbeat")
        listener.close()  # the service is gone: after 2 failed checks, critical
        wait_for(lambda: registry.get("kept").health == "critical", timeout=10,
                 message="critical")
        said = registry.get("kept").last_heartbeat
        time.sleep(1.0)  # five intervals: a down service's record is not kept alive
        assert registry.get("kept").last_heartbeat == said
        registry.deregister_service("kept")
        listener = socket.create_server(("127.0.0.1", port))  # and back: registered again
        wait_for(lambda: registry.get("kept") and registry.get("kept").health == "passing",
                 timeout=10, message="registered again")
        keeper.send_signal(signal.SIGTERM)
        assert keeper.wait(timeout=5) == 0
        assert "kept critical: tcp 127.0.0.1" in keeper.stderr.read()
    finally:
        keeper.kill()
        listener.close()


@pytest.mark.parametrize("plant", ["symlink", "garbage", "missing", "interval 1e-9",
                                   "interval NaN", "timeout -1", "threshold 0", "port x"])
def test_a_keeper_spec_it_cannot_trust_is_one_line_and_exit_2(tmp_path, plant):
    path = _keeper_spec(tmp_path, free_port())
    if " " in plant:  # a number out of its range: an interval of 1e-9 spun a core
        spec = json.loads(path.read_text())
        key, value = plant.split()
        where = {"interval": spec["registry"], "timeout": spec["health"],
                 "port": spec["health"], "threshold": spec}[key]
        where[{"threshold": "unhealthy_threshold"}.get(key, key)] = (
            value if key == "port" else float(value))
        path.write_text(json.dumps(spec))  # json writes NaN as NaN, and reads it back
    elif plant == "symlink":
        target = tmp_path / "elsewhere.json"
        path.rename(target)
        path.symlink_to(target)
    elif plant == "garbage":
        path.write_text("{not json")
    else:
        path.unlink()
    done = subprocess.run([sys.executable, "-m", "tts_ops.discovery.keeper", str(path)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "unusable spec" in lines[0] and "Traceback" not in done.stderr
