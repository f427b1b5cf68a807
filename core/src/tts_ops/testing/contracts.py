"""Conformance suites for registry stores, log sinks and deploy strategies (backends:
`tts_ops.testing.conformance`). Subclass one in your tests and give it the fixtures it
names; every test then runs against your implementation, unchanged.

```python
class TestMyStore(RegistryStoreConformance):
    @pytest.fixture
    def open_store(self, tmp_path):
        return lambda: MyStore(f"my://{tmp_path}")   # each call: a new client, same data
```
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tts_ops.contracts import LogSink, RegistryStore, Strategy
from tts_ops.discovery.record import InstanceRecord
from tts_ops.errors import ConfigError


def _record(rid: str, port: int = 9000, **fields: Any) -> InstanceRecord:
    """A record with id ``svc@RID`` (or ``RID`` itself when it names another service)."""
    rid = rid if rid == "other" else f"svc@{rid}"
    return InstanceRecord(id=rid, service=rid.split("@")[0], host="127.0.0.1", port=port,
                          **fields)


def _bare(rid: str) -> str:
    """An id without the node a shared store qualifies it with (``svc@a:web-1``)."""
    return rid.split(":")[0]


def _ids(records: list[Any]) -> list[str]:
    return [_bare(r.id) for r in records]


class RegistryStoreConformance:
    """Fixture: ``open_store()`` returns a new store over the same data each call (as two
    processes or two hosts would open it). A store whose records expire by themselves
    (``expires_records = True``, e.g. etcd leases) is checked in real time: records with a
    ttl of 2 s, and a wait of up to ttl + 3 s."""

    @pytest.fixture
    def store(self, open_store: Callable[[], Any]) -> Any:
        store = open_store()
        yield store
        store.close()

    def test_it_is_a_registry_store(self, store):
        assert isinstance(store, RegistryStore)

    def test_register_get_list_in_id_order(self, store):
        change = store.register(_record("b", port=9001))
        assert change["kind"] == "registered" and _bare(change["id"]) == "svc@b"
        assert change["record"]["port"] == 9001
        store.register(_record("a"))
        store.register(_record("other"))
        assert _ids(store.list()) == ["other", "svc@a", "svc@b"]
        assert _ids(store.list(service="svc")) == ["svc@a", "svc@b"]
        assert store.get("svc@b").port == 9001 and store.get("svc@nope") is None
        assert store.register(_record("b", port=9002))["kind"] == "updated"
        assert store.get("svc@b").port == 9002

    def test_deregister_once(self, store):
        store.register(_record("a"))
        assert store.deregister("svc@a")["kind"] == "deregistered"
        assert store.deregister("svc@a") is None and store.get("svc@a") is None

    def test_heartbeat_keeps_alive_and_reports_only_changes(self, store):
        store.register(_record("a", ttl=30.0))
        found, change = store.heartbeat("svc@a")
        assert found and change is None and store.beats() >= 1
        found, change = store.heartbeat("svc@a", health="warning")
        assert found and change["kind"] == "health" and store.get("svc@a").health == "warning"
        assert store.heartbeat("svc@nope") == (False, None)
        found, change = store.heartbeat("svc@b", record=_record("b"))
        assert not found and change["kind"] == "registered" and store.get("svc@b") is not None
        with pytest.raises(ConfigError):
            store.heartbeat("svc@a", health="sleepy")

    def test_a_stale_record_coming_back_is_a_change(self, store):
        if getattr(store, "expires_records", False):
            store.register(_record("a", ttl=2.0))
            _wait_gone(store, "svc@a", 5.0)
            found, change = store.heartbeat("svc@a", record=_record("a", ttl=2.0))
            assert not found and change["kind"] == "registered"
            assert store.get("svc@a") is not None
            return
        store.register(_record("a", ttl=1.0, last_heartbeat=1000.0, registered_at=1000.0))
        found, change = store.heartbeat("svc@a", now=5000.0)
        assert found and change is not None and change["kind"] == "health"

    def test_heartbeats_keep_a_record_past_its_ttl(self, store):
        if not getattr(store, "expires_records", False):
            store.register(_record("a", ttl=1.0, last_heartbeat=1000.0, registered_at=1000.0))
            assert store.get("svc@a").effective_health(1000.5) == "passing"
            assert store.get("svc@a").effective_health(1002.0) == "critical"
            return
        import time

        store.register(_record("a", ttl=2.0))
        store.register(_record("b", ttl=2.0))
        end = time.monotonic() + 3.5
        while time.monotonic() < end:  # a beat every 0.5 s for longer than the ttl
            assert store.heartbeat("svc@a")[0]
            time.sleep(0.5)
        assert store.get("svc@a").effective_health() == "passing"
        _wait_gone(store, "svc@b", 2.0)  # no beats: gone by now, or within 2 s more

    def test_update_weight_health_release_only(self, store):
        store.register(_record("a"))
        change = store.update("svc@a", weight=25)
        assert change["kind"] == "weight" and store.get("svc@a").weight == 25
        store.update("svc@a", release="r1")
        assert store.get("svc@a").release == "r1"
        assert store.update("svc@nope", weight=1) is None
        with pytest.raises(ConfigError):
            store.update("svc@a", port=1)

    def test_changes_are_kept_in_order_and_per_service(self, store):
        start = store.last_seq()
        store.register(_record("a"))
        store.register(_record("other"))
        store.update("svc@a", weight=5)
        store.deregister("svc@a")
        kinds = [(_bare(c["id"]), c["kind"]) for c in store.changes(start)]
        assert kinds == [("svc@a", "registered"), ("other", "registered"),
                         ("svc@a", "weight"), ("svc@a", "deregistered")]
        seqs = [c["seq"] for c in store.changes(start)]
        assert seqs == sorted(seqs) and len(set(seqs)) == 4
        assert [_bare(c["id"]) for c in store.changes(start, service="other")] == ["other"]
        assert store.last_seq() >= seqs[-1] and store.changes(store.last_seq()) == []

    def test_cleanup_removes_only_long_silent_records(self, store):
        if getattr(store, "expires_records", False):
            start = store.last_seq()
            store.register(_record("old", ttl=2.0))
            store.register(_record("new"))
            _wait_gone(store, "svc@old", 5.0)
            assert store.cleanup(deregister_after=0.0) == []  # the store did it already
            assert _ids(store.list()) == ["svc@new"]
            kinds = [(_bare(c["id"]), c["kind"]) for c in store.changes(start)]
            assert ("svc@old", "stale_removed") in kinds
            return
        store.register(_record("old", ttl=1.0, last_heartbeat=1000.0, registered_at=1000.0))
        store.register(_record("new"))
        removed = store.cleanup(deregister_after=10.0)
        assert [c["id"] for c in removed] == ["svc@old"]
        assert removed[0]["kind"] == "stale_removed"
        assert [r.id for r in store.list()] == ["svc@new"]

    def test_a_second_client_sees_every_write(self, store, open_store):
        other = open_store()
        try:
            start = other.last_seq()
            store.register(_record("a"))
            store.update("svc@a", weight=7)
            assert other.get("svc@a").weight == 7
            assert [c["kind"] for c in other.changes(start)] == ["registered", "weight"]
        finally:
            other.close()


def _wait_gone(store: Any, rid: str, within: float) -> None:
    """Poll until ``rid`` is gone (its lease ran out); fail after ``within`` seconds."""
    import time

    deadline = time.monotonic() + within
    while store.get(rid) is not None:
        assert time.monotonic() < deadline, f"{rid} still there {within} s after its ttl"
        time.sleep(0.05)


class LogSinkConformance:
    """Fixture: ``make_sink(lines)`` returns ``(sink, append)``: a sink holding ``lines``
    (bytes, each ending in a newline) and a function that adds one more line to it.

    A line comes back as written; a sink that keeps its own time of each line (journald)
    may put it before a plain (non-JSON) one as ``YYYY-MM-DDTHH:MM:SS ``, in `lines` and
    `follow` alike."""

    def test_it_is_a_log_sink(self, make_sink):
        sink, _append = make_sink([])
        assert isinstance(sink, LogSink)

    def test_lines_come_back_in_order_each_once(self, make_sink):
        lines = [f'{{"n": {i}}}\n'.encode() for i in range(50)] + [b"plain text\n"]
        sink, _append = make_sink(lines)
        skipped: list[str] = []
        got = list(sink.lines(skipped.append))
        assert len(got) == len(lines) and skipped == []
        for line, written in zip(got, lines, strict=True):
            assert same_line(line, written), (line, written)

    def test_follow_sees_a_new_line(self, make_sink):
        import threading

        sink, append = make_sink([b"old\n"])
        seen: list[str] = []
        done = threading.Event()

        def reader() -> None:
            for line in sink.follow(done.is_set):
                seen.append(line)
                if "new" in line:
                    done.set()

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        from tts_ops.testing import wait_for

        def appended() -> bool:
            append(b"new\n")
            return done.wait(0.5)

        wait_for(appended, timeout=20, message="follow to see the new line")
        thread.join(timeout=5)  # stop() is asked while nothing comes, not at the next line
        assert not thread.is_alive(), "follow did not end within 5 s of stop()"
        assert any(same_line((line.rstrip("\n") + "\n").encode(), b"new\n") for line in seen)
        assert "old" not in "".join(seen)


def file_sink_maker(path: Path, factory: Callable[[Path], LogSink]) -> Callable[..., Any]:
    """A ``make_sink`` for a sink that reads a file: ``path`` holds the lines, ``append``
    adds one as a writer would, ``factory(path)`` is the sink under test."""
    def make(lines: list[bytes]) -> tuple[LogSink, Callable[[bytes], None]]:
        path.write_bytes(b"".join(lines))

        def append(line: bytes) -> None:
            with open(path, "ab") as fh:
                fh.write(line)

        return factory(path), append

    return make


def same_line(line: bytes, written: bytes) -> bool:
    """``line`` is ``written``, or for a plain line ``written`` after a sink's own time."""
    import re

    if line == written or written.startswith(b"{"):
        return line == written
    return re.fullmatch(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d " + re.escape(written), line,
                        re.S) is not None


class StrategyConformance:
    """Fixtures: ``strategy_name`` (as registered) and ``plugins``, the plugin objects to
    load (the strategy's plugin and a process backend's, e.g. ``tts_ops_manual.plugin``).

    Each test deploys the reference server (espeak, one worker) with the strategy through
    the real CLI while a client sends it speech requests at its configured address the
    whole time (a strategy that analyses traffic gets some): the client must see no
    failed request, and exactly one generation must serve after each deploy.
    """

    @pytest.fixture
    def deploy_env(self, tmp_path, plugins):
        import threading
        import urllib.request

        from tts_ops.testing import free_port, make_host, run_cli

        host = make_host(*plugins)
        cfg = tmp_path / "c.json"
        state = tmp_path / "state"
        port = free_port()
        failures: list[str] = []
        stop = threading.Event()

        def configure(**fields: Any) -> None:
            cfg.write_text(json.dumps({"services": [{
                "name": "conf", "port": port, "engine_type": "espeak", "workers": 1,
                "restart_delay": 0, "max_restarts": 0, "start_timeout": 20,
                "deploy": {"drain_seconds": 0.2, "progress_deadline_seconds": 60,
                           "canary": {"step_pause_seconds": 0.2, "min_samples": 1,
                                      "steps": [50, 100]}},
                **fields}]}))

        def cli(*args: str) -> Any:
            return run_cli(["-c", str(cfg), "--state-dir", str(state), *args], host=host)

        def client() -> None:
            body = json.dumps({"text": "hi"}).encode()
            while not stop.is_set():
                req = urllib.request.Request(f"http://127.0.0.1:{port}/synthesize", body,
                                             {"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(req, timeout=10) as resp:
                        resp.read()
                except OSError as exc:
                    failures.append(str(exc))
                stop.wait(0.02)

        configure()
        traffic = threading.Thread(target=client, daemon=True)
        try:
            yield configure, cli, traffic.start, failures
        finally:
            stop.set()
            if traffic.is_alive():
                traffic.join(15)
            cli("stop", "--all", "--force")

    def test_the_factory_makes_a_strategy(self, plugins, strategy_name):
        from tts_ops.testing import make_host

        strategy = make_host(*plugins).lookup("strategy", strategy_name).factory()
        assert isinstance(strategy, Strategy) and strategy.name == strategy_name

    def test_deploys_leave_one_generation_serving_and_fail_no_request(
            self, deploy_env, strategy_name, plugins):
        _configure, cli, start_traffic, failures = deploy_env
        first = cli("deploy", "conf", "--strategy", strategy_name)
        assert first.exit_code == 0, first.output
        start_traffic()
        for _ in range(2):
            result = cli("deploy", "conf", "--strategy", strategy_name)
            assert result.exit_code == 0, result.output
            rows = json.loads(cli("status", "conf", "--json").output)
            assert len([r for r in rows if r["state"] == "running"]) == 1, rows
        history = json.loads(cli("deploy", "history", "--json").output)
        assert [h["result"] for h in history] == ["deployed"] * 3
        from tts_ops.testing import make_host

        strategy = make_host(*plugins).lookup("strategy", strategy_name).factory()
        if not strategy.same_slot:  # one that replaces in place stops before it starts
            assert failures == []

    def test_a_release_that_cannot_start_leaves_the_old_one_serving(
            self, deploy_env, strategy_name):
        configure, cli, _start_traffic, _failures = deploy_env
        assert cli("deploy", "conf", "--strategy", strategy_name).exit_code == 0
        before = json.loads(cli("status", "conf", "--json").output)
        # the new release's command exits at once
        configure(command=[sys.executable, "-c", "raise SystemExit(3)"], socket="inherit")
        result = cli("deploy", "conf", "--strategy", strategy_name)
        assert result.exit_code == 1, result.output
        after = json.loads(cli("status", "conf", "--json").output)
        # the same generation serves (direct restarts it: same name, a new pid)
        assert [r["name"] for r in after if r["state"] == "running"] == [
            r["name"] for r in before if r["state"] == "running"] != []
        history = json.loads(cli("deploy", "history", "--json").output)
        assert history[-1]["result"] == "rolled_back"


__all__ = ["LogSinkConformance", "RegistryStoreConformance", "StrategyConformance"]


class RouterConformance:
    """Every router: give the fixture ``make_router`` (``state_dir -> Router``). The suite
    starts two small HTTP servers and the router's own process (its ``process(service)``
    argv), and checks shares, live changes without a reload, drains and status."""

    @pytest.fixture
    def routed(self, tmp_path, make_router):
        import subprocess

        from tts_ops.config.models import ServiceConfig
        from tts_ops.testing import free_port

        servers = {name: _NamedServer(name) for name in ("a", "b", "c")}
        service = ServiceConfig(name="svc", port=free_port(), command=["true"],
                                health_check="/ready")
        router = make_router(tmp_path / "state")
        procs: list[Any] = []

        def start(initial: list[Any]) -> Any:
            router.sync(service, initial)
            process = router.process(service)
            procs.append(subprocess.Popen(process.argv(), cwd=process.working_dir,
                                          stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
            _wait_up(router, service, [s.name for s in initial if s.weight > 0])
            return procs[-1]

        yield router, service, servers, start
        for proc in procs:
            proc.kill()
            proc.wait()
        for server in servers.values():
            server.close()

    def test_it_is_a_router(self, make_router, tmp_path):
        from tts_ops.contracts import Router

        assert isinstance(make_router(tmp_path), Router)

    def test_weights_decide_who_serves_and_set_exact_shares(self, routed):
        router, service, servers, start = routed
        a, b = servers["a"], servers["b"]
        start([a.server(100), b.server(0)])
        assert set(_hits(service, 20)) == {"a"}
        router.set_weights(service, {"a": 0, "b": 100})
        assert set(_hits(service, 20)) == {"b"}
        router.set_weights(service, {"a": 25, "b": 75})
        hits = _hits(service, 400)
        assert 80 <= hits.count("a") <= 120, f"a served {hits.count('a')} of 400 at 25%"
        weights = {s.name: s.weight for s in router.status(service).servers}
        assert weights == {"a": 25, "b": 75}

    def test_servers_change_live_without_a_reload(self, routed):
        router, service, servers, start = routed
        a, b, c = servers["a"], servers["b"], servers["c"]
        start([a.server(100), b.server(100)])
        worker = router.status(service).worker_pid
        assert router.sync(service, [a.server(100), c.server(100)]) is False
        _wait_up(router, service, ["a", "c"])
        assert set(_hits(service, 30)) == {"a", "c"}  # b is out, c is in
        assert router.status(service).worker_pid == worker

    def test_a_drained_server_gets_no_new_request(self, routed):
        router, service, servers, start = routed
        start([servers["a"].server(100), servers["b"].server(100)])
        assert router.drain(service, ["a"], timeout=5) == 0
        assert set(_hits(service, 20)) == {"b"}
        states = {s.name: s for s in router.status(service).servers}
        assert states["a"].sessions == 0

    def test_status_counts_requests_per_server(self, routed):
        router, service, servers, start = routed
        start([servers["a"].server(100), servers["b"].server(0)])
        before = {s.name: s.requests for s in router.status(service).servers}
        _hits(service, 15)
        after = {s.name: s for s in router.status(service).servers}
        assert after["a"].requests - before["a"] == 15
        assert after["b"].requests == before["b"]
        assert after["a"].state.startswith("UP") and after["a"].address.endswith(
            f":{servers['a'].port}")

    def test_a_reload_keeps_the_address_and_the_servers(self, routed):
        router, service, servers, start = routed
        proc = start([servers["a"].server(100)])
        worker = router.status(service).worker_pid
        router.reload(service, proc.pid)
        assert router.status(service).worker_pid != worker
        assert set(_hits(service, 10)) == {"a"}

    def test_a_router_not_running_says_so_in_one_line(self, make_router, tmp_path):
        from tts_ops.config.models import ServiceConfig
        from tts_ops.testing import free_port

        service = ServiceConfig(name="svc", port=free_port(), command=["true"])
        router = make_router(tmp_path / "state")
        router.sync(service, [])
        state = router.status(service)
        assert state.running is False and state.servers == []
        assert state.detail and "\n" not in state.detail


class _NamedServer:
    """A threaded HTTP server on a free loopback port that answers its name."""

    def __init__(self, name: str) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body leave at once

            def do_GET(self) -> None:
                body = name.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.name = name
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def server(self, weight: int) -> Any:
        from tts_ops.routing import RouterServer

        return RouterServer(self.name, "127.0.0.1", self.port, weight)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _hits(service: Any, count: int) -> list[str]:
    """Who answered each of ``count`` requests on one keep-alive connection."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
    out = []
    try:
        for _ in range(count):
            conn.request("GET", "/who")
            resp = conn.getresponse()
            body = resp.read().decode()
            assert resp.status == 200, f"HTTP {resp.status}: {body[:200]}"
            out.append(body)
    finally:
        conn.close()
    return out


def _wait_up(router: Any, service: Any, names: list[str]) -> None:
    from tts_ops.testing import wait_for

    def up() -> bool:
        state = router.status(service)
        seen = {s.name: s.state for s in state.servers}
        return state.running and all(seen.get(n, "").startswith("UP") for n in names)

    wait_for(up, timeout=15, message=f"the router to see {names} up")
