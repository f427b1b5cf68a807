"""``instances: N`` behind HAProxy on every process backend, and the bad inputs a routed
service can meet: no haproxy, a config haproxy refuses, a taken port, a router that is
not running."""

from __future__ import annotations

import json
import socket
import uuid

import pytest

from tts_ops.testing import free_port, make_host, run_cli
from tts_ops_haproxy.testing import who

pytestmark = pytest.mark.slow


def _host(backend_plugin):
    from tts_ops_strategies import plugin as strategies_plugin

    from tts_ops_haproxy import plugin as haproxy_plugin

    return make_host(backend_plugin, strategies_plugin, haproxy_plugin)


def _config(tmp_path, **fields):
    name = f"rt-{uuid.uuid4().hex[:6]}"
    port = free_port()
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [{
        "name": name, "port": port, "engine_type": "espeak", "workers": 1,
        "router": "haproxy", **fields}]}))
    return name, port, ["-c", str(cfg), "--state-dir", str(tmp_path / "s")]


def _documented_keys(command):
    """The keys docs/json.md lists for ``command --json`` (tests/test_json_schemas.py
    holds the core's commands to the same list)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[3] / "docs" / "json.md").read_text()
    line = re.search(rf"^- `{command} --json`: list of \{{(.*)\}}$", text, re.M)
    assert line, f"docs/json.md has no line for {command} --json"
    return {part.strip().strip('"') for part in line[1].split(",")}


def _two_instances_behind_one_port(tmp_path, host, pm, check=None, **fields):
    name, port, cli = _config(tmp_path, instances=2, **fields)
    try:
        out = run_cli([*cli, "start", *pm], host=host)
        assert out.exit_code == 0, out.output
        assert set(who("127.0.0.1", port, 20)) == {f"{name}@blue-0", f"{name}@blue-1"}
        if check is not None:
            check()
        state = json.loads(run_cli([*cli, "router", "status", "--json"], host=host).stdout)[0]
        assert [(s["name"], s["state"]) for s in state["servers"]] == [
            ("blue-0", "UP"), ("blue-1", "UP")]
        assert set(state) == _documented_keys("router status")
        rows = {r["name"]: r for r in json.loads(
            run_cli([*cli, "status", "--json", *pm], host=host).stdout)}
        assert rows[f"{name}-router"]["state"] == "running"
        assert rows[f"{name}-router"]["backend"] == pm[1]
    finally:
        stopped = run_cli([*cli, "stop", "--all", *pm], host=host)
    assert stopped.exit_code == 0, stopped.output
    rows = json.loads(run_cli([*cli, "status", "--json", *pm], host=host).stdout)
    assert {r["state"] for r in rows} == {"stopped"} and len(rows) == 3
    with socket.socket() as s:  # the router let the address go
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


def test_two_instances_behind_one_port_with_manual(haproxy, tmp_path):
    from tts_ops_manual import plugin

    stats = free_port()
    _two_instances_behind_one_port(tmp_path, _host(plugin), ["--process-manager", "manual"],
                                   options={"haproxy": {"stats_port": stats}},
                                   check=lambda: _exporter(stats))


def test_a_service_user_runs_haproxys_workers_too(haproxy, tmp_path, manual_host):
    """The service's ``user`` reaches HAProxy: its master (root: it binds, and re-executes
    itself on a reload) starts workers that run as the user, like the instances."""
    import os
    import pwd
    import urllib.request

    import psutil

    if os.geteuid() != 0:
        pytest.skip("switching users needs root")
    nobody = pwd.getpwnam("nobody")
    # an instance nobody can run (this venv's python lives under /root): Debian's python3
    command = ["/usr/bin/python3", "-m", "http.server", "--bind", "127.0.0.1", "--directory",
               "/", "{port}"]
    name, port, cli = _config(tmp_path, process_manager="manual", user="nobody",
                              command=command, notify=False, health_check="http:/")
    try:
        out = run_cli([*cli, "start"], host=manual_host)
        assert out.exit_code == 0, out.output
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
            assert resp.status == 200
        rows = {r["name"]: r for r in json.loads(run_cli(
            [*cli, "status", "--json"], host=manual_host).stdout)}
        master = psutil.Process(rows[f"{name}-router"]["pid"])
        assert master.uids().real == 0
        workers = master.children()
        assert workers and {w.uids().real for w in workers} == {nobody.pw_uid}
        assert {w.gids().real for w in workers} == {nobody.pw_gid}
        assert psutil.Process(rows[f"{name}-blue"]["pid"]).uids().real == nobody.pw_uid
    finally:
        run_cli([*cli, "stop", "--all"], host=manual_host)


def _exporter(port, at_least=20):
    """HAProxy's own Prometheus exporter on the stats port counts the requests served."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    served = [line for line in text.splitlines()
              if line.startswith('haproxy_backend_http_responses_total{proxy="instances",'
                                 'code="2xx"}')]
    assert served and float(served[0].split()[-1]) >= at_least, served


def test_two_instances_behind_one_port_with_systemd(haproxy, user_manager, tmp_path):
    from tts_ops_systemd import plugin

    _two_instances_behind_one_port(tmp_path, _host(plugin), ["--process-manager", "systemd"])


def test_two_instances_behind_one_port_with_supervisor(haproxy, supervisord, tmp_path):
    from tts_ops_supervisor import plugin

    _two_instances_behind_one_port(tmp_path, _host(plugin), [
        "--process-manager", "supervisor", "--supervisor-conf", str(supervisord.conf)])


@pytest.fixture
def manual_host():
    from tts_ops_manual import plugin

    return _host(plugin)


def test_without_haproxy_start_exits_3_naming_the_package(haproxy, tmp_path, manual_host,
                                                         monkeypatch):
    monkeypatch.setenv("TTS_OPS_HAPROXY", str(tmp_path / "no-haproxy"))
    _name, _port, cli = _config(tmp_path, process_manager="manual")
    out = run_cli([*cli, "start"], host=manual_host)
    assert out.exit_code == 3
    assert "apt install haproxy" in out.output and "Traceback" not in out.output
    assert out.output.count("\n") == 1


def test_a_config_haproxy_refuses_changes_nothing(haproxy, tmp_path, manual_host):
    name, _port, cli = _config(tmp_path, process_manager="manual", host="256.1.1.1")
    out = run_cli([*cli, "start"], host=manual_host)
    assert out.exit_code == 1
    assert "haproxy -c refused the rendered config" in out.output
    assert "invalid address: '256.1.1.1'" in out.output and "nothing was changed" in out.output
    assert not (tmp_path / "s" / "routers" / name / "haproxy.cfg").exists()
    rows = json.loads(run_cli([*cli, "status", "--json"], host=manual_host).stdout)
    assert {r["state"] for r in rows} == {"stopped"}  # nothing started


def test_a_taken_router_port_fails_the_start_with_its_owner(haproxy, tmp_path, manual_host):
    name, port, cli = _config(tmp_path, process_manager="manual")
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", port))
        taken.listen()
        try:
            out = run_cli([*cli, "start"], host=manual_host)
            assert out.exit_code == 1
            assert f"{name}-router: port {port} on 127.0.0.1 is already in use" in out.output
        finally:
            run_cli([*cli, "stop", "--all"], host=manual_host)


def test_router_status_of_a_stopped_router_is_one_line_and_exit_1(haproxy, tmp_path,
                                                                   manual_host):
    name, _port, cli = _config(tmp_path, process_manager="manual")
    out = run_cli([*cli, "router", "status"], host=manual_host)
    assert out.exit_code == 1
    assert f"{name}: haproxy on 127.0.0.1" in out.output
    assert "runtime socket" in out.output and "unreachable" in out.output
    assert len(out.output.strip().splitlines()) == 1


def test_a_router_nobody_installed_is_a_config_error_naming_the_package(tmp_path,
                                                                        manual_host):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [{"name": "x", "router": "envoy"}]}))
    out = run_cli(["-c", str(cfg), "--state-dir", str(tmp_path / "s"), "start"],
                  host=manual_host)
    assert out.exit_code == 2
    assert "services[0].router: no router named 'envoy' (registered: haproxy)" in out.output


def test_a_new_router_setting_reloads_haproxy_without_closing_the_address(haproxy, tmp_path,
                                                                           manual_host):
    """Only the router's own settings need a reload: SIGUSR2 to the same master, a new
    worker on the same listening socket; a pinned client sees no error."""
    from tts_ops.testing.load import PinnedLoad, require_hey

    require_hey()
    name, port, cli = _config(tmp_path, process_manager="manual")
    cfg = tmp_path / "c.json"

    def router_row():
        rows = json.loads(run_cli([*cli, "status", "--json"], host=manual_host).stdout)
        return next(r for r in rows if r["name"] == f"{name}-router")

    try:
        assert run_cli([*cli, "start"], host=manual_host).exit_code == 0
        master = router_row()["pid"]
        worker = json.loads(run_cli([*cli, "router", "status", "--json"],
                                    host=manual_host).stdout)[0]["worker_pid"]
        stats = free_port()
        data = json.loads(cfg.read_text())
        data["services"][0]["options"] = {"haproxy": {"stats_port": stats}}
        with PinnedLoad(f"http://127.0.0.1:{port}/synthesize") as load:
            cfg.write_text(json.dumps(data))
            out = run_cli([*cli, "start"], host=manual_host)
            assert out.exit_code == 0, out.output
            set(who("127.0.0.1", port, 5))
        assert load.result.clean and load.result.total > 0, load.result.summary()
        assert router_row()["pid"] == master  # reloaded, not restarted
        state = json.loads(run_cli([*cli, "router", "status", "--json"],
                                   host=manual_host).stdout)[0]
        assert state["worker_pid"] != worker
        _exporter(stats, at_least=5)
    finally:
        run_cli([*cli, "stop", "--all"], host=manual_host)


def test_orchestrate_starts_a_routed_service_behind_its_router(haproxy, tmp_path,
                                                               manual_host):
    name, port, cli = _config(tmp_path, process_manager="manual", instances=2)
    try:
        out = run_cli([*cli, "orchestrate", "start"], host=manual_host)
        assert out.exit_code == 0, out.output
        assert set(who("127.0.0.1", port, 10)) == {f"{name}@blue-0", f"{name}@blue-1"}
    finally:
        out = run_cli([*cli, "orchestrate", "stop"], host=manual_host)
    assert out.exit_code == 0, out.output
    rows = json.loads(run_cli([*cli, "status", "--json"], host=manual_host).stdout)
    assert {r["state"] for r in rows} == {"stopped"} and len(rows) == 3


def test_a_router_added_to_a_running_service_asks_for_a_stop_first(haproxy, tmp_path,
                                                                   manual_host):
    name, port, cli = _config(tmp_path, process_manager="manual")
    cfg = tmp_path / "c.json"
    data = json.loads(cfg.read_text())
    plain = {k: v for k, v in data["services"][0].items() if k != "router"}
    cfg.write_text(json.dumps({"services": [plain]}))
    try:
        assert run_cli([*cli, "start"], host=manual_host).exit_code == 0
        cfg.write_text(json.dumps(data))  # now with "router": "haproxy"
        out = run_cli([*cli, "deploy", "--strategy", "blue_green"], host=manual_host)
        assert out.exit_code == 1
        assert f"stop it first (tts-ops stop {name})" in out.output
        assert set(who("127.0.0.1", port, 3)) == {name}  # untouched: still serving on its own
    finally:
        cfg.write_text(json.dumps({"services": [plain]}))
        run_cli([*cli, "stop", "--all"], host=manual_host)


def test_a_full_disk_fails_a_routed_deploy_in_one_line_and_it_keeps_serving(haproxy,
                                                                             tmp_path,
                                                                             manual_host):
    from tts_ops.testing import fill_disk, tiny_disk

    with tiny_disk(tmp_path, "4m") as disk:
        name, port, cli = _config(tmp_path, process_manager="manual",
                                  log_file=str(tmp_path / "svc.log"))
        cli[-1] = str(disk / "s")
        try:
            assert run_cli([*cli, "start"], host=manual_host).exit_code == 0
            fill_disk(disk)
            out = run_cli([*cli, "deploy", "--strategy", "blue_green"], host=manual_host)
            assert out.exit_code == 1
            # refused by its first write, or (when a page was freed meanwhile: the
            # supervisor's status rewrites) by the free-space check: one line either way
            errors = [ln for ln in out.output.splitlines() if "No space left on device" in ln
                      or ("MiB free under" in ln and "need 100 MiB" in ln)]
            assert len(errors) == 1 and "Traceback" not in out.output, out.output
            assert set(who("127.0.0.1", port, 5)) == {f"{name}@blue"}
        finally:
            (disk / "filler").unlink(missing_ok=True)
            run_cli([*cli, "stop", "--all"], host=manual_host)


def test_a_killed_haproxy_comes_back_with_its_servers_and_weights(haproxy, tmp_path,
                                                                   manual_host):
    """HAProxy's master exits when its worker dies; the backend restarts it, and the config
    it reads carries every server and weight the runtime API last set."""
    import os
    import signal

    from tts_ops.testing import wait_for

    name, port, cli = _config(tmp_path, process_manager="manual", instances=2)

    def state():
        return json.loads(run_cli([*cli, "router", "status", "--json"],
                                  host=manual_host).stdout)[0]

    try:
        assert run_cli([*cli, "start"], host=manual_host).exit_code == 0
        from tts_ops.testing import service as make_service
        from tts_ops_haproxy.router import HaproxyRouter

        fields = json.loads((tmp_path / "c.json").read_text())["services"][0]
        svc = make_service(fields.pop("name"), **fields)
        HaproxyRouter(tmp_path / "s").set_weights(svc, {"blue-0": 30})
        before = state()
        os.kill(before["worker_pid"], signal.SIGKILL)
        wait_for(lambda: state()["running"] and state()["worker_pid"] != before["worker_pid"],
                 timeout=20, message="the router to come back")
        wait_for(lambda: all(s["state"] == "UP" for s in state()["servers"]), timeout=20,
                 message="its servers to be up again")
        after = state()
        assert [(s["name"], s["address"], s["weight"]) for s in after["servers"]] == [
            (s["name"], s["address"], s["weight"]) for s in before["servers"]]
        assert [s["weight"] for s in after["servers"]] == [30, 100]
        assert set(who("127.0.0.1", port, 20)) == {f"{name}@blue-0", f"{name}@blue-1"}
    finally:
        run_cli([*cli, "stop", "--all"], host=manual_host)


def test_hostile_router_settings_are_one_line_config_errors(haproxy, tmp_path, manual_host):
    for fields, words in (
        ({"router": "haproxy; rm -rf /"}, "invalid router name"),
        ({"router_scope": "galaxy"}, "router_scope"),
        ({"options": {"haproxy": {"stats_port": "9101 ssl crt /x"}}}, "stats_port"),
        ({"options": {"haproxy": {"maxconn": -1}}}, "maxconn"),
        ({"options": {"haproxy": {"maxconn": 1_000_000}}}, "file descriptors and this host"),
        ({"options": {"haproxy": {"global": "lua-load /tmp/x.lua"}}}, "global"),
        ({"host": "127.0.0.1:80 ssl"}, "cannot be written into haproxy.cfg"),
    ):
        _name, _port, cli = _config(tmp_path, process_manager="manual", **fields)
        out = run_cli([*cli, "start"], host=manual_host)
        assert out.exit_code == 2, (fields, out.output)
        assert words in out.output and "Traceback" not in out.output, (fields, out.output)
        assert len(out.output.strip().splitlines()) == 1, (fields, out.output)
    _name, port, cli = _config(tmp_path, process_manager="manual")
    data = json.loads((tmp_path / "c.json").read_text())
    data["services"][0]["options"] = {"haproxy": {"stats_port": port}}
    (tmp_path / "c.json").write_text(json.dumps(data))
    out = run_cli([*cli, "start"], host=manual_host)
    assert out.exit_code == 2 and "is the service's own port" in out.output, out.output


def test_the_largest_maxconn_validation_allows_starts(haproxy, tmp_path, manual_host):
    """The bound `config validate` puts on maxconn is what HAProxy can really take here: at
    the bound it starts and serves (1,000,000 passed validation and failed at start)."""
    from tts_ops_haproxy.options import FD_MARGIN, descriptor_limit

    most = (descriptor_limit() - FD_MARGIN) // 2
    name, port, cli = _config(tmp_path, process_manager="manual",
                              options={"haproxy": {"maxconn": most}})
    try:
        out = run_cli([*cli, "start"], host=manual_host)
        assert out.exit_code == 0, out.output
        assert set(who("127.0.0.1", port, 3)) == {f"{name}@blue"}
    finally:
        run_cli([*cli, "stop", "--all"], host=manual_host)


def test_top_scrapes_the_instances_and_not_the_router(haproxy, tmp_path, manual_host):
    """Through the router, /metrics is whichever instance answered: top's row for the
    router shows no rate, each instance's row its own."""
    from tts_ops.cli.top_cmd import Top
    from tts_ops.runtime import Runtime as App

    name, _port, cli = _config(tmp_path, process_manager="manual", instances=2)
    try:
        assert run_cli([*cli, "start"], host=manual_host).exit_code == 0
        app = App(config_path=cli[1], state_dir=cli[3], host_factory=lambda: manual_host)
        top = Top(app, None, 1.0)
        top.refresh()
        sampled = {row.name: top.trends.samples.get(row.name) is not None
                   for row, _r, _p in top.rows}
        assert sampled == {f"{name}-blue-0": True, f"{name}-blue-1": True,
                           f"{name}-router": False}
    finally:
        run_cli([*cli, "stop", "--all"], host=manual_host)


def test_a_never_started_routed_service_deploys_with_direct(haproxy, tmp_path, manual_host):
    """Its own router held the port and the plain service tried to bind it ("already in use
    by haproxy ... the old release is still serving", though nothing was)."""
    name, port, cli = _config(tmp_path, process_manager="manual")
    try:
        out = run_cli([*cli, "deploy", "--strategy", "direct"], host=manual_host)
        assert out.exit_code == 0, out.output
        assert set(who("127.0.0.1", port, 3)) == {f"{name}@blue"}
        again = run_cli([*cli, "deploy", "--strategy", "direct"], host=manual_host)
        assert again.exit_code == 0, again.output
        assert set(who("127.0.0.1", port, 3)) == {f"{name}@blue"}
    finally:
        run_cli([*cli, "stop", "--all"], host=manual_host)


def test_a_failed_first_deploy_does_not_say_an_old_release_serves(haproxy, tmp_path,
                                                                   manual_host):
    import sys

    _name, _port, cli = _config(tmp_path, process_manager="manual", start_timeout=5,
                               command=[sys.executable, "-c", "raise SystemExit(3)"],
                               notify=False, health_check="tcp")
    try:
        out = run_cli([*cli, "deploy", "--strategy", "direct"], host=manual_host)
        assert out.exit_code == 1
        assert "the old release is still serving" not in out.output
        assert "nothing served it before, and no instance of it was left running" in out.output
    finally:
        run_cli([*cli, "stop", "--all"], host=manual_host)
