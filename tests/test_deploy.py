"""Deploys of the reference TTS server with every strategy, real processes and real clients."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import psutil
import pytest
from tts_ops_strategies import plugin as strategies_plugin

from tts_ops import hookimpl
from tts_ops.deploy.lock import DeployLock
from tts_ops.deploy.releases import ReleaseStore
from tts_ops.discovery import ServiceRegistry, TTSServiceDiscovery
from tts_ops.testing import make_host, run_cli, wait_for
from tts_ops_manual import plugin as manual_plugin


def ports(n: int) -> int:
    """A base port with n bindable ports after it, below the ephemeral range (32768+), where
    the tests' own client connections would otherwise take them."""
    import random
    import socket

    rng = random.Random()
    while True:
        base = rng.randrange(20000, 32000 - n)
        try:
            for p in range(base, base + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return base


class Env:
    def __init__(self, tmp_path, service: dict, plugins=()):
        self.tmp = tmp_path
        self.cfg = tmp_path / "tts_services.json"
        self.state = tmp_path / "state"
        self.service = service
        self.write()
        self.host = make_host(manual_plugin, strategies_plugin, *plugins)

    def write(self, **changes):
        self.service.update(changes)
        self.cfg.write_text(json.dumps({"services": [self.service]}))

    def cli(self, *args):
        return run_cli(["-c", str(self.cfg), "--state-dir", str(self.state), *args,
                        *(["--process-manager", "manual"]
                          if args[0] in ("deploy", "rollback", "start")
                          and args[:2] != ("deploy", "history") else [])],
                       host=self.host)

    def registry(self):
        return ServiceRegistry(self.state / "registry.db")

    def status(self):
        return json.loads(self.cli("status", "--json").stdout)


@pytest.fixture
def env(tmp_path):
    base = ports(4)
    e = Env(tmp_path, {"name": "tts", "engine_type": "espeak", "port": base,
                       "restart_delay": 0, "start_timeout": 20,
                       "deploy": {"drain_seconds": 1.0, "progress_deadline_seconds": 60,
                                  "canary": {"step_pause_seconds": 0.5, "min_samples": 5,
                                             "steps": [50, 100]}}})
    yield e
    e.cli("stop", "--all", "--force")


class Client(threading.Thread):
    """Sends synthesis requests through discovery, the whole time, and counts failures."""

    def __init__(self, env: Env) -> None:
        super().__init__(daemon=True)
        self.discovery = TTSServiceDiscovery(env.registry(), service="tts", cache_ttl=0.2)
        self.ok = 0
        self.failed: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                status, _h, body = self.discovery.post_json("/synthesize", {"text": "hello"})
                if status == 200 and body[:4] == b"RIFF":
                    self.ok += 1
                else:
                    self.failed.append(f"HTTP {status}")
            except Exception as exc:
                self.failed.append(repr(exc))
            time.sleep(0.01)

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["blue_green", "rolling", "canary"])
def test_zero_failed_requests_while_deploying(env, strategy):
    if strategy == "rolling":
        env.write(instances=2)
    first = env.cli("deploy", "--strategy", strategy)
    assert first.exit_code == 0, first.output
    client = Client(env)
    client.start()
    try:
        wait_for(lambda: client.ok >= 3, timeout=10, message="the client's first answers")
        for _ in range(2):  # to the other colour and back
            result = env.cli("deploy", "--strategy", strategy)
            assert result.exit_code == 0, result.output
    finally:
        client.stop()
    assert client.failed == []
    assert client.ok > 20
    records = env.registry().find_services(service="tts")
    assert all(r.weight == 100 and r.health == "passing" for r in records)
    assert len(records) == (2 if strategy == "rolling" else 1)
    history = json.loads(env.cli("deploy", "history", "--json").stdout)
    assert [h["result"] for h in history] == ["deployed"] * 3
    assert {p["phase"] for p in history[-1]["phases"]} >= {"validate", "prepare"}


@pytest.mark.slow
def test_canary_logs_each_analysis_against_its_threshold(env):
    assert env.cli("deploy", "--strategy", "canary").exit_code == 0
    client = Client(env)
    client.start()
    try:
        result = env.cli("deploy", "--strategy", "canary")
    finally:
        client.stop()
    assert result.exit_code == 0, result.output
    assert "canary at 50%: error rate 0.0000" in result.output
    assert "vs max 0.0100: pass" in result.output


@pytest.mark.slow
def test_canary_without_traffic_is_inconclusive_and_aborts(env):
    env.write(deploy={**env.service["deploy"], "progress_deadline_seconds": 4})
    assert env.cli("deploy", "--strategy", "canary").exit_code == 0
    before = env.status()[0]
    result = env.cli("deploy", "--strategy", "canary")
    assert result.exit_code == 1
    assert "inconclusive" in result.stderr and "old release is still serving" in result.stderr
    after = env.status()
    assert [(r["name"], r["pid"]) for r in after] == [(before["name"], before["pid"])]
    assert [r.weight for r in env.registry().find_services(service="tts")] == [100]


def test_direct_reports_downtime_and_keeps_the_port(env):
    assert env.cli("deploy").exit_code == 0
    first = env.status()[0]
    result = env.cli("deploy", "--strategy", "direct")
    assert result.exit_code == 0, result.output
    # the address stayed open through it (the socket is tts-ops'): said as such
    assert "no process accepted for" in result.output and "address stayed open" in result.output
    second = env.status()[0]
    assert second["port"] == first["port"] and second["pid"] != first["pid"]
    record = json.loads(env.cli("deploy", "history", "--json").stdout)[-1]
    assert 0 < record["downtime_s"] < 10
    (instance,) = env.registry().find_services(service="tts")
    assert instance.release == record["release"]  # discovery knows which release serves


@pytest.mark.slow
@pytest.mark.parametrize(("change", "reason"), [
    ({"command": ["/nonexistent/tts"]}, "pre-deployment validation failed"),
    ({"command": [sys.executable, "-c", "raise SystemExit(4)"], "health_check": "tcp"},
     "did not start"),
    ({"command": [sys.executable, "-c", "import time; time.sleep(60)"], "health_check": "tcp",
      "start_timeout": 2}, "did not start"),
])
def test_a_bad_release_never_replaces_the_good_one(env, change, reason):
    assert env.cli("deploy", "--strategy", "blue_green").exit_code == 0
    serving = env.status()[0]
    env.write(**change)
    result = env.cli("deploy", "--strategy", "blue_green")
    assert result.exit_code == 1
    assert reason in result.stderr
    assert "Traceback" not in result.output
    now = env.status()
    assert [(r["name"], r["pid"], r["state"]) for r in now] == [
        (serving["name"], serving["pid"], "running")]
    records = env.registry().find_services(service="tts")
    assert [(r.id, r.weight) for r in records] == [(f"tts@{serving['name'][4:]}", 100)]


def test_failed_verification_rolls_back(env):
    class Veto:
        @hookimpl
        def tts_ops_verify_deploy(self, service, url):
            return [f"{url} sounds wrong"]

    assert env.cli("deploy", "--strategy", "blue_green").exit_code == 0
    serving = env.status()[0]
    env.host.register(Veto())
    result = env.cli("deploy", "--strategy", "blue_green")
    assert result.exit_code == 1 and "sounds wrong" in result.stderr
    assert env.status()[0]["pid"] == serving["pid"]
    states = [r["state"] for r in json.loads(env.cli("releases", "--json").stdout)]
    assert states == ["active", "failed"]


def test_a_second_deploy_of_the_same_service_is_refused(env):
    with DeployLock(env.state, "tts"):
        result = env.cli("deploy")
    assert result.exit_code == 1
    assert f"another deploy is in progress (pid {os.getpid()}" in result.stderr


def test_dry_run_changes_nothing(env):
    result = env.cli("deploy", "--dry-run", "--strategy", "blue_green")
    assert result.exit_code == 0
    assert "plan: stop nothing; start ['tts-blue']" in result.output
    assert "checks: all passed" in result.output
    assert not (env.state / "releases").exists()
    assert env.status()[0]["state"] == "stopped"


def test_pre_deploy_checks_report_every_problem(env):
    import socket

    env.write(command=[sys.executable, "-m", "tts_server", "--engine", "espeak", "--port",
                       "{port}"], notify=True)  # a command of its own: socket none
    assert env.cli("deploy", "--strategy", "blue_green").exit_code == 0
    green = env.service["port"] + 1
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", green))
        blocker.listen()
        result = env.cli("deploy", "--strategy", "blue_green")
    assert result.exit_code == 1
    assert "pre-deployment validation failed; nothing was changed" in result.stderr
    assert f"port {green} for tts-green is already in use" in result.stderr


@pytest.mark.slow
def test_rollback_returns_to_the_previous_release(env):
    assert env.cli("deploy", "--strategy", "blue_green").exit_code == 0
    env.write(log_level="WARNING")
    assert env.cli("deploy", "--strategy", "blue_green").exit_code == 0
    rows = json.loads(env.cli("releases", "--json").stdout)
    first, second = rows[0]["id"], rows[1]["id"]
    assert env.cli("rollback", "tts").exit_code == 0
    store = ReleaseStore(env.state, "tts")
    assert store.current().id == first
    assert store.get(second).state == "rolled_back"
    assert env.status()[0]["state"] == "running"
    assert env.cli("rollback", "tts", "--to", "nope").exit_code == 2


def test_keep_releases_prunes_failed_first_and_keeps_the_last_good(tmp_path):
    store = ReleaseStore(tmp_path, "svc")
    made = []
    for state in ["superseded", "failed", "superseded", "failed", "active", "failed"]:
        r = store.create({"name": "svc"}, "direct", "development", None, None)
        store.save(r, state=state)
        made.append(r)
        time.sleep(0.01)
    store.activate(made[4])
    removed = store.prune(3)
    assert set(removed) == {made[1].id, made[3].id, made[5].id}
    assert {r.id for r in store.all()} == {made[0].id, made[2].id, made[4].id}


def test_environment_overrides_and_their_errors(env):
    env.cfg.write_text(json.dumps({"services": [env.service], "environments": {
        "production": {"tts": {"log_level": "WARNING"}}}}))
    assert env.cli("deploy", "--environment", "production").exit_code == 0
    release = json.loads(env.cli("releases", "--json").stdout)[0]
    assert release["environment"] == "production"
    assert ReleaseStore(env.state, "tts").get(release["id"]).config["log_level"] == "WARNING"
    env.cfg.write_text(json.dumps({"services": [env.service], "environments": {
        "production": {"tts": {"port": 70000}}}}))
    bad = env.cli("deploy", "--environment", "production")
    assert bad.exit_code == 2
    assert "environments.production.tts.port: must be 1-65535 (got 70000)" in bad.stderr
    assert env.cli("deploy", "--environment", "moon").exit_code == 2
    env.write()  # a valid config again: the fixture's `stop --all` must be able to read it
    assert env.cli("stop", "--all").exit_code == 0


def test_missing_strategy_plugin_exits_3(env):
    env.host = make_host(manual_plugin)
    result = env.cli("deploy", "--strategy", "canary")
    assert result.exit_code == 3
    from tts_ops.hints import install_hint

    assert install_hint("tts-ops-strategies") in result.stderr


def _deploy_in_background(env, strategy: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tts_ops", "-c", str(env.cfg), "--state-dir",
                             str(env.state), "deploy", "--strategy", strategy,
                             "--process-manager", "manual"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _read_until(proc: subprocess.Popen, wanted: str, timeout: float = 60) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    while wanted not in seen and time.monotonic() < deadline:
        seen += proc.stdout.readline()
    assert wanted in seen, seen
    return seen


@pytest.mark.slow
def test_sigint_during_a_deploy_leaves_the_old_release_serving(env):
    assert env.cli("deploy", "--strategy", "blue_green").exit_code == 0
    serving = env.status()[0]
    env.write(deploy={**env.service["deploy"], "drain_seconds": 30})
    proc = _deploy_in_background(env, "blue_green")
    _read_until(proc, "switch")
    time.sleep(0.5)  # into the drain: past the switch, before the old slot stops
    proc.send_signal(signal.SIGINT)
    _stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "interrupted (SIGINT); the old release is still serving" in stderr
    now = env.status()
    assert [(r["name"], r["pid"]) for r in now] == [(serving["name"], serving["pid"])]
    weights = {r.id: r.weight for r in env.registry().find_services(service="tts")}
    assert weights == {f"tts@{serving['name'][4:]}": 100}


def _supervisors(state) -> list[int]:
    import psutil

    return [p.pid for p in psutil.process_iter(["cmdline"])
            if "tts_ops_manual.supervise" in (p.info["cmdline"] or [])
            and any(str(state) in a for a in p.info["cmdline"])]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "SIGHUP", "SIGKILL", "closed-stdout"])
def test_an_interrupted_deploy_ends_with_the_old_release_serving_and_nothing_hidden(env, how):
    assert env.cli("deploy", "--strategy", "blue_green").exit_code == 0
    serving = env.status()[0]
    # past "switch" the new slot has the traffic and the deploy drains the old one, writing
    # nothing for 10 minutes: a closed output must be noticed meanwhile, not after
    env.write(deploy={**env.service["deploy"], "drain_seconds": 600,
                      "progress_deadline_seconds": 1200})
    proc = _deploy_in_background(env, "blue_green")
    _read_until(proc, "switch")
    during = {r["name"] for r in env.status()}
    assert during == {serving["name"], f"tts-{'green' if 'blue' in serving['name'] else 'blue'}"}
    if how == "closed-stdout":
        proc.stdout.close()  # as `tts-ops deploy | head -4` does
    else:
        proc.send_signal(getattr(signal, how))
    proc.wait(timeout=90)  # well inside the drain
    stderr = proc.stderr.read()
    if how == "SIGKILL":
        assert proc.returncode == -9
        # a read-only command says so and changes nothing: both generations still run
        pids = {r["name"]: r["pid"] for r in env.status()}
        status = env.cli("status", "--json")
        assert "was interrupted" in status.stderr and "tts-ops recover" in status.stderr
        assert {r["name"]: r["pid"] for r in json.loads(status.stdout)} == pids
        assert set(pids) == during and all(pids.values())
        # recover finds the dead deploy's journal and reverses it, in one line
        recovered = env.cli("recover")
        assert recovered.exit_code == 0, recovered.stderr
        assert "was interrupted" in recovered.stderr and "rolled back" in recovered.stderr
        assert "was interrupted" not in env.cli("status").stderr
    else:
        assert proc.returncode == 1, stderr
        why = "its output was closed" if how == "closed-stdout" else how
        assert f"interrupted ({why}); the old release is still serving" in stderr
        assert "Traceback" not in stderr
    now = env.status()
    assert [(r["name"], r["pid"]) for r in now] == [(serving["name"], serving["pid"])]
    weights = {r.id: r.weight for r in env.registry().find_services(service="tts")}
    assert weights == {f"tts@{serving['name'][4:]}": 100}
    records = json.loads(env.cli("deploy", "history", "--json").stdout)
    assert records[-1]["result"] == "rolled_back", records[-1]
    env.write(deploy={**env.service["deploy"], "drain_seconds": 0.5})
    assert env.cli("deploy", "--strategy", "blue_green").exit_code == 0  # the next one works
    assert env.cli("stop", "--all").exit_code == 0
    assert _supervisors(env.state) == []


@pytest.mark.slow
def test_a_killed_direct_deploy_is_reversed_to_the_release_that_served(env):
    import psutil

    assert env.cli("deploy", "--strategy", "direct").exit_code == 0
    first = json.loads(env.cli("releases", "--json").stdout)[0]["id"]
    env.write(env={"GREETING": "second"})
    proc = _deploy_in_background(env, "direct")
    _read_until(proc, "start_new")
    proc.kill()
    proc.wait(timeout=30)
    status = env.cli("status", "--json")
    assert "was interrupted" in status.stderr and "rolled back" not in status.stderr
    # any command that changes the service finishes it first: here a start
    started = env.cli("start", "tts")
    assert started.exit_code == 0, started.stderr
    assert "was interrupted" in started.stderr and "rolled back" in started.stderr
    status = env.cli("status", "--json")
    [row] = json.loads(status.stdout)
    assert row["state"] == "running"
    environ = psutil.Process(row["pid"]).environ()
    assert environ["TTS_OPS_RELEASE"] == first and "GREETING" not in environ
    assert env.cli("stop", "--all").exit_code == 0
    assert _supervisors(env.state) == []


@pytest.mark.slow
def test_the_readme_flow_blue_green_then_curl_on_the_configured_port(tmp_path):
    """README: ``./deploy.sh --strategy blue_green`` (what it runs after its set-up), then
    ``curl localhost:9000/synthesize``, twice (blue, then green): the embedded default's
    port answers each time, with speech. In a network namespace of its own: the README's
    own service may be running on this machine's port 9000 (the suite must pass beside it)."""
    import shutil
    import uuid

    if os.geteuid() != 0 or shutil.which("ip") is None:
        if os.environ.get("CI"):
            pytest.fail("CI runs as root with iproute2 (ip netns)")
        pytest.skip("needs root and iproute2 for a network namespace")
    ns = f"tts-readme-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    inside = ["ip", "netns", "exec", ns]
    subprocess.run([*inside, "ip", "link", "set", "lo", "up"], check=True)
    tts_ops = os.path.join(os.path.dirname(sys.executable), "tts-ops")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TTS_OPS_")}
    env["TTS_OPS_STATE_DIR"] = str(tmp_path / "state")
    run = lambda *a: subprocess.run([*inside, tts_ops, *a], cwd=tmp_path,  # noqa: E731
                                    env=env, capture_output=True, text=True, timeout=300)
    curl = ("import urllib.request; r = urllib.request.urlopen(urllib.request.Request("
            "'http://localhost:9000/synthesize', data=b'{\"text\": \"Hello from tts-ops\"}',"
            " headers={'Content-Type': 'application/json'}), timeout=30);"
            " print(r.status, r.read(4).decode())")
    try:
        for _ in range(2):
            done = run("deploy", "--strategy", "blue_green", "--process-manager", "manual")
            assert done.returncode == 0, done.stdout + done.stderr
            answer = subprocess.run([*inside, sys.executable, "-c", curl], capture_output=True,
                                    text=True, timeout=60)
            assert answer.stdout.split() == ["200", "RIFF"], answer.stdout + answer.stderr
        status = run("status")
        assert "127.0.0.1:9000" in status.stdout, status.stdout
    finally:
        stopped = run("stop", "--all")
        after = run("status").stdout
        subprocess.run(["ip", "netns", "del", ns], check=False)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "stopped" in stopped.stdout and "running" not in after


@pytest.mark.slow
def test_rollback_and_reload_keep_the_address_and_are_recorded_as_such(env):
    assert env.cli("deploy", "--strategy", "direct").exit_code == 0
    env.write(log_level="DEBUG")
    assert env.cli("deploy", "--strategy", "direct").exit_code == 0
    first, second = [r["id"] for r in json.loads(env.cli("releases", "--json").stdout)]
    out = env.cli("rollback")
    assert out.exit_code == 0, out.output
    # a rollback of a direct service goes blue_green (direct would stop before it starts)
    assert "rollback d-" in out.output and f"to release {first} with blue_green" in out.output
    assert "address: 127.0.0.1:" in out.output and "no connection is refused" in out.output
    out = env.cli("reload", "tts")
    assert out.exit_code == 0, out.output
    history = json.loads(env.cli("deploy", "history", "--json").stdout)
    assert [(h["kind"], h["strategy"], h["result"]) for h in history] == [
        ("deploy", "direct", "deployed"), ("deploy", "direct", "deployed"),
        ("rollback", "blue_green", "deployed"), ("restart", "blue_green", "deployed")]
    assert history[2]["release"] == history[3]["release"] == first != second
    rows = env.status()
    assert [r["state"] for r in rows] == ["running"]
    with urllib.request.urlopen(f"http://127.0.0.1:{env.service['port']}/health",
                                timeout=10) as resp:
        assert json.load(resp)["release"] == first
    plan = env.cli("deploy", "--dry-run", "--strategy", "canary")
    assert "stays open" in plan.output and "share of the accepting processes" in plan.output


def test_config_validate_warns_of_slots_on_a_neighbours_port(tmp_path):
    cmd = [sys.executable, "-m", "tts_ops.testing.dummy_service", "--port", "{port}"]
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [
        {"name": "a", "port": 9002, "command": cmd, "health_check": "tcp"},
        {"name": "b", "port": 9003, "command": cmd, "health_check": "tcp"},
        {"name": "c", "port": 9010}]}))  # the reference server: its address is shared
    out = run_cli(["-c", str(cfg), "config", "validate"])
    assert out.exit_code == 0, out.output
    assert "a: its blue/green slots use ports 9002-9003, and 9003 is b's" in out.stderr
    assert "c:" not in out.stderr and "b: its" not in out.stderr


@pytest.mark.slow
def test_restart_of_a_service_never_deployed_makes_no_release(env):
    assert env.cli("start").exit_code == 0
    first = env.status()[0]
    out = env.cli("restart", "tts")
    assert out.exit_code == 0, out.output
    (row,) = env.status()
    assert row["name"] == "tts-green" and row["pid"] != first["pid"]
    assert json.loads(env.cli("releases", "--json").stdout) == []
    (record,) = json.loads(env.cli("deploy", "history", "--json").stdout)
    assert (record["kind"], record["release"], record["result"]) == ("restart", None,
                                                                      "deployed")
    with urllib.request.urlopen(f"http://127.0.0.1:{env.service['port']}/ready",
                                timeout=10) as resp:
        assert resp.status == 200
    assert env.cli("restart", "tts").exit_code == 0  # and again, to the other colour
    assert [r["name"] for r in env.status()] == ["tts-blue"]


@pytest.mark.slow
def test_the_reference_servers_options_pass_through_the_config(env, tmp_path):
    import asyncio

    from wyoming.client import AsyncTcpClient
    from wyoming.info import Describe, Info

    from tts_ops.testing import free_port

    wyoming = free_port()
    env.write(workers=1, wyoming_port=wyoming)
    assert env.cli("start").exit_code == 0
    (row,) = env.status()
    import psutil

    argv = psutil.Process(row["pid"]).cmdline()
    assert argv[argv.index("--workers") + 1] == "1"
    assert argv[argv.index("--wyoming-uri") + 1] == f"tcp://127.0.0.1:{wyoming}"
    assert psutil.Process(row["pid"]).children() == []  # one worker: the process itself

    async def describe() -> int:
        async with AsyncTcpClient("127.0.0.1", wyoming) as client:
            await client.write_event(Describe().event())
            return len(Info.from_event(await client.read_event()).tts[0].voices)

    assert asyncio.run(describe()) > 0
    # a zero-downtime restart: the new generation binds the Wyoming port beside the old one
    assert env.cli("restart", "tts").exit_code == 0
    assert asyncio.run(describe()) > 0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"services": [{"name": "x", "workers": 0, "wyoming_port": 0}]}))
    out = run_cli(["-c", str(bad), "config", "validate"])
    assert out.exit_code == 2
    assert "services[0].workers" in out.stderr and "services[0].wyoming_port" in out.stderr


def _servers_of(state) -> set[int]:
    """Every process a supervisor of this state dir runs (the servers on the address)."""
    import psutil

    out = set()
    for pid in _supervisors(state):
        try:  # not the supervisor's own forks (its heartbeat writer)
            out |= {c.pid for c in psutil.Process(pid).children()
                    if "tts_ops_manual.supervise" not in c.cmdline()}
        except psutil.NoSuchProcess:
            continue
    return out


@pytest.mark.slow
def test_an_interrupted_restart_at_any_point_leaves_no_process_status_does_not_list(env):
    """SIGTERM or SIGINT at 12 points of a zero-downtime restart (0.5 s to 2.5 s in): the
    slot being started is rolled back whatever its start reached, so every server that
    runs is one `status` lists, and `stop --all` then `start` work (no address held)."""
    env.write(deploy={**env.service["deploy"], "drain_seconds": 0.3})
    assert env.cli("start", "tts").exit_code == 0
    points = [0.5 + i * 2.0 / 11 for i in range(12)]
    for i, delay in enumerate(points):
        proc = subprocess.Popen([sys.executable, "-m", "tts_ops", "-c", str(env.cfg),
                                 "--state-dir", str(env.state), "restart", "tts"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            proc.wait(timeout=delay)  # the interruption point (the restart may end first)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM if i % 2 == 0 else signal.SIGINT)
        _out, err = proc.communicate(timeout=90)
        assert "Traceback" not in err, err
        listed = {r["pid"] for r in env.status() if r["pid"]}
        running = _servers_of(env.state)
        assert running <= listed, (delay, err, running, listed)
        supervisors = set(_supervisors(env.state))
        import psutil

        roots = {p for p in supervisors if psutil.Process(p).ppid() not in supervisors}
        assert len(roots) == len(listed), (delay, err)
    assert env.cli("stop", "--all").exit_code == 0
    assert _supervisors(env.state) == []
    started = env.cli("start", "tts")
    assert started.exit_code == 0, started.stderr
    assert env.cli("stop", "--all").exit_code == 0


@pytest.mark.slow
def test_a_deleted_holder_socket_does_not_break_the_next_restart_or_deploy(env):
    """A tmp cleaner deleted <state>/sockets/NAME.sock: every restart and deploy failed until
    stop + start. The holder makes it again (the address never closed meanwhile)."""
    assert env.cli("start", "tts").exit_code == 0
    path = env.state / "sockets" / "tts.sock"
    assert path.is_socket()
    path.unlink()
    restarted = env.cli("restart", "tts")
    assert restarted.exit_code == 0, restarted.output
    assert path.is_socket()
    path.unlink()
    deployed = env.cli("deploy", "--strategy", "blue_green")
    assert deployed.exit_code == 0, deployed.output
    [row] = env.status()
    assert row["state"] == "running"
    assert env.cli("stop", "--all").exit_code == 0


@pytest.mark.slow
def test_stop_all_of_one_config_leaves_another_configs_service_serving(env, tmp_path):
    """Two configs, one state dir (root's default is shared): `-c a.json stop --all` let go
    of b.json's address holder, and b's next restart failed with Address already in use."""
    other = tmp_path / "b.json"
    b_port = ports(4)
    other.write_text(json.dumps({"services": [{**env.service, "name": "other",
                                               "port": b_port}]}))

    def b(*args):
        return run_cli(["-c", str(other), "--state-dir", str(env.state), *args,
                        *(["--process-manager", "manual"] if args[0] == "start" else [])],
                       host=env.host)

    assert b("start", "other").exit_code == 0
    assert env.cli("start", "tts").exit_code == 0
    stopped = env.cli("stop", "--all")
    assert stopped.exit_code == 0
    assert "left 1 address holder(s) of services not in this config alone" in stopped.stderr
    with urllib.request.urlopen(f"http://127.0.0.1:{b_port}/health", timeout=10) as resp:
        assert resp.status == 200
    restarted = b("restart", "other")
    assert restarted.exit_code == 0, restarted.output
    assert b("stop", "--all").exit_code == 0
    # a holder no process uses (its service gone from every config) is let go
    from tts_ops import sockets

    sockets.ensure_holder(env.state, "ghost", "127.0.0.1", ports(1))
    assert sockets.holder_info(env.state, "ghost") is not None
    stopped = env.cli("stop", "--all")
    assert stopped.exit_code == 0 and "left" not in stopped.stderr
    assert sockets.holder_info(env.state, "ghost") is None


@pytest.mark.slow
def test_the_platform_line_names_the_engine_and_a_change_of_engine_is_said(env):
    """A restart silently switched the hybrid service from espeak-ng to piper while every
    deploy's platform line said espeak-ng."""
    pytest.importorskip("piper")
    first = env.cli("deploy", "--strategy", "blue_green")
    assert first.exit_code == 0, first.output
    assert "engine espeak," in first.output and "engine changes" not in first.output
    env.write(engine_type="piper")
    second = env.cli("deploy", "--strategy", "blue_green", "--skip-tests")
    assert second.exit_code == 0, second.output
    assert "engine piper," in second.output
    assert ("engine changes: the serving generation runs espeak, the new one will run piper"
            in second.output)


@pytest.mark.slow
def test_the_monitor_asks_about_the_slot_a_record_names_not_the_configured_name(env):
    """After a deploy the service runs as ``tts-green``: ``discovery monitor`` asks the
    backend about that slot; asking about ``tts`` (which runs under no name of its own)
    flapped the record to critical at every check. A slot stopped behind its back is
    still found out."""
    for _ in range(2):  # blue, then green
        assert env.cli("deploy", "--strategy", "blue_green").exit_code == 0
    out = env.cli("discovery", "monitor", "--once")
    assert out.exit_code == 0, out.output
    assert "not running" not in out.output and "critical" not in out.output, out.output
    record = env.registry().get("tts@green")
    assert record is not None and record.health == "passing"
    green = next(r for r in env.status() if r["name"] == "tts-green")
    served = psutil.Process(green["pid"])
    served.parent().kill()  # its supervisor: the slot's process dies with it
    served.wait(10)
    out = env.cli("discovery", "monitor", "--once")
    assert "its process is not running" in out.output, out.output


class Crashes:
    """A paging plugin: what it is told of crashes and restarts."""

    def __init__(self):
        self.seen = []

    @hookimpl
    def tts_ops_service_exited(self, service, exit_code, exit_signal):
        self.seen.append(("exited", service.name, service.owner, exit_signal))

    @hookimpl
    def tts_ops_service_restarted(self, service, status):
        self.seen.append(("restarted", service.name, service.owner, status.port))


@pytest.mark.slow
def test_events_follow_the_generation_that_serves_under_the_service_s_name(tmp_path):
    """After deploys the service runs as tts-blue, then tts-green: ``events -f`` started
    before the deploys still sees the serving slot's crash and restart, reports them under
    ``tts`` with the slot as the instance, and the plugins' hooks fire for them."""
    crashes = Crashes()
    e = Env(tmp_path, {"name": "tts", "engine_type": "espeak", "port": ports(2),
                       "restart_delay": 0, "start_timeout": 20,
                       "deploy": {"drain_seconds": 0.5}}, plugins=(crashes,))
    try:
        assert e.cli("deploy", "--strategy", "blue_green").exit_code == 0
        follower = threading.Thread(target=e.cli, args=("events", "-f", "--for", "30"),
                                    daemon=True)
        follower.start()
        wait_for(lambda: any("(pump)" in t.name for t in threading.enumerate()),
                 message="the follower following")
        assert e.cli("deploy", "--strategy", "blue_green").exit_code == 0  # now green
        green = next(r for r in e.status() if r["name"] == "tts-green")
        os.kill(green["pid"], signal.SIGKILL)
        wait_for(lambda: any(s[0] == "restarted" for s in crashes.seen), timeout=30,
                 message="the restart of the serving slot, through events -f")
        assert ("exited", "tts-green", "tts", signal.SIGKILL) in crashes.seen
        restarted = next(s for s in crashes.seen if s[0] == "restarted")
        assert restarted[:3] == ("restarted", "tts-green", "tts")
        assert restarted[3] == green["port"]  # the slot's own address, not a placeholder
        history = [json.loads(line) for line in e.cli("events", "--json").stdout.splitlines()]
        mine = [h for h in history if h["kind"] in ("exited", "restarted")]
        assert {(h["service"], h["instance"]) for h in mine} == {("tts", "tts@green")}
        text = e.cli("events").stdout
        assert "tts (green) exited" in text and "tts (blue) ready" in text, text
    finally:
        e.cli("stop", "--all", "--force")


@pytest.mark.slow
def test_the_web_page_s_log_of_a_service_is_its_serving_generation_s(env):
    """``/api/logs/tts`` after a deploy (tts runs as tts-blue, then tts-green) is the
    serving slot's log, not a 404 for a name nothing runs under any more; status and the
    page show the configured address, not the slot's private port."""
    for _ in range(2):
        assert env.cli("deploy", "--strategy", "blue_green").exit_code == 0
    web = subprocess.Popen([sys.executable, "-m", "tts_ops", "-c", str(env.cfg),
                            "--state-dir", str(env.state), "web", "--port", "0"],
                           env={**os.environ, "TTS_OPS_PLUGINS": "manual,strategies"},
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = web.stdout.readline()
        assert first.startswith("tts-ops web: http://"), first
        url = first.split()[2].rstrip("/")
        with urllib.request.urlopen(f"{url}/api/logs/tts?lines=200", timeout=10) as resp:
            body = json.loads(resp.read())
        green = next(r for r in env.status() if r["name"] == "tts-green")
        # the green slot's own start lines: its private port is in them
        assert any(str(green["port"]) in line for line in body["lines"]), body
        # status and the page name the address clients use, the private port beside it
        configured = f"127.0.0.1:{env.service['port']}"
        assert green["address"] == configured and green["port"] != env.service["port"]
        with urllib.request.urlopen(f"{url}/api/status", timeout=10) as resp:
            rows = json.loads(resp.read())["services"]
        assert {r["name"]: r["address"] for r in rows} == {"tts-green": configured}
    finally:
        web.send_signal(signal.SIGINT)
        web.communicate(timeout=20)


def test_start_on_a_busy_address_is_one_line_naming_the_holder(tmp_path):
    """``socket: inherit`` (the reference server): the address is held by another process;
    ``start`` says so once, with that process's name and pid, and ``deploy --dry-run``
    names it too."""
    import socket

    port = ports(1)
    busy = socket.socket()
    busy.bind(("127.0.0.1", port))
    busy.listen()
    e = Env(tmp_path, {"name": "tts", "engine_type": "espeak", "port": port})
    try:
        done = e.cli("start")
        assert done.exit_code == 1
        errors = [line for line in done.stderr.splitlines() if "error" in line]
        assert len(errors) == 1, done.stderr
        assert f"127.0.0.1:{port}" in errors[0] and f"(pid {os.getpid()})" in errors[0]
        plan = e.cli("deploy", "--dry-run", "--strategy", "direct")
        assert f"port {port} for tts is already in use by" in plan.output, plan.output
        assert f"(pid {os.getpid()})" in plan.output
    finally:
        busy.close()
        e.cli("stop", "--all", "--force")


@pytest.mark.slow
def test_a_canary_counts_the_paths_it_is_told_and_says_so_while_it_waits(env):
    """With only /health traffic, the default canary (synthesis paths) says on a pipe what
    it counted while it waits and, at the deadline, which paths count; told to count
    /health, the same traffic carries it through."""
    assert env.cli("deploy", "--strategy", "blue_green").exit_code == 0
    port = env.service["port"]
    stop = threading.Event()

    def health_traffic():
        while not stop.is_set():
            with contextlib.suppress(OSError, http.client.HTTPException):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).read()

    sender = threading.Thread(target=health_traffic, daemon=True)
    sender.start()
    try:
        plan = env.cli("deploy", "--dry-run", "--strategy", "canary")
        assert "canary steps count requests to /synthesize, /v1/audio/speech" in plan.output
        env.write(deploy={**env.service["deploy"], "progress_deadline_seconds": 4})
        waited = env.cli("deploy", "--strategy", "canary")
        assert waited.exit_code == 1
        assert "requests counted, 0 errors" in waited.output  # progress on a pipe
        assert ("requests to /synthesize, /v1/audio/speech reached it (need 5) before the"
                " deadline; only those paths count") in waited.output, waited.output
        env.write(deploy={**env.service["deploy"], "progress_deadline_seconds": 60,
                          "canary": {**env.service["deploy"]["canary"],
                                     "count_paths": ["/health"]}})
        counted = env.cli("deploy", "--strategy", "canary")
        assert counted.exit_code == 0, counted.output
    finally:
        stop.set()
        sender.join(10)
