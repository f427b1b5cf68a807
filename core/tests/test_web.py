"""``tts-ops web`` end to end: real services under the manual backend, a real server process,
and the page in a real headless Chromium (selenium + Debian's chromium-driver)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tts_ops.testing import DUMMY, free_port, wait_for

HOSTILE_LINE = '<img id="pwned" src="x"> & </pre><script>window.pwned=1</script>'


@pytest.fixture
def site(tmp_path):
    """Two dummy services started by a real ``tts-ops``; ``serve(*args)`` starts ``tts-ops
    web`` with them and returns its base URL."""
    ports = [free_port(), free_port()]
    services = [{"name": f"web{i}", "port": p, "notify": True, "process_manager": "manual",
                 "restart_delay": 0,
                 "command": [*DUMMY, "--port", str(p), "--print", HOSTILE_LINE]}
                for i, p in enumerate(ports)]
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": services}))
    base = [sys.executable, "-m", "tts_ops", "-c", str(cfg), "--state-dir", str(tmp_path / "s")]
    env = {**os.environ, "TTS_OPS_PLUGINS": "manual"}
    env.pop("TTS_OPS_WEB_TOKEN", None)
    subprocess.run([*base, "start", "--all"], env=env, check=True, capture_output=True)
    servers: list[subprocess.Popen] = []

    def serve(*args: str, extra_env: dict[str, str] | None = None,
              prefix: tuple[str, ...] = ()) -> str:
        proc = subprocess.Popen([*prefix, *base, "web", "--port", "0", *args],
                                env={**env, **(extra_env or {})}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        servers.append(proc)
        first = proc.stdout.readline()
        assert first.startswith("tts-ops web: http://"), first + proc.stderr.read()
        return first.split()[2].rstrip("/")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*base, *args], env=env, capture_output=True, text=True)

    try:
        yield serve, cli
    finally:
        for proc in servers:
            proc.send_signal(signal.SIGINT)
            _out, err = proc.communicate(timeout=20)
            assert "Traceback" not in err, err
        cli("stop", "--all", "--force")


def _request(url: str, method: str = "GET", token: str | None = None,
             host: str | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    if host is not None:
        req.add_header("Host", host)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body)
        except ValueError:
            return exc.code, {"text": body.decode()}


def _states(cli) -> dict[str, str]:
    return {row["name"]: row["state"] for row in json.loads(cli("status", "--json").stdout)}


def test_api_status_lists_every_service_with_state_release_and_health(site):
    serve, _cli = site
    url = serve()
    code, data = _request(f"{url}/api/status")
    assert code == 200
    assert {s["name"]: s["state"] for s in data["services"]} == {"web0": "running",
                                                                "web1": "running"}
    row = data["services"][0]
    assert {"service", "release", "health", "pid", "cpu_percent", "rss_bytes"} <= set(row)
    assert row["health"] == "passing" and data["actions"] is False
    assert {e["service"] for e in data["events"]} == {"web0", "web1"}
    code, logs = _request(f"{url}/api/logs/web1?lines=5")
    assert code == 200 and HOSTILE_LINE in logs["lines"]
    assert _request(f"{url}/api/logs/nosuch")[0] == 404
    assert _request(f"{url}/api/logs/web1?lines=0")[0] == 400
    assert _request(f"{url}/nowhere") == (404, {"error": "Not Found"})
    # a process that no longer runs has no health, whatever its last check said
    assert _cli("stop", "web1").returncode == 0
    code, data = _request(f"{url}/api/status")
    stopped = next(s for s in data["services"] if s["name"] == "web1")
    assert stopped["state"] == "stopped" and stopped["health"] is None, stopped


def test_the_token_guards_every_action(site):
    serve, cli = site
    read_only = serve()
    for action in ("restart", "stop", "start"):
        code, body = _request(f"{read_only}/api/services/web0/{action}", "POST", token="x")
        assert code == 403 and "--token" in body["error"]
    url = serve(extra_env={"TTS_OPS_WEB_TOKEN": "right-token"})
    for action in ("restart", "stop", "start"):
        for token in (None, "", "wrong-token", "right-token-and-more", "right-toke"):
            code, _body = _request(f"{url}/api/services/web0/{action}", "POST", token=token)
            assert code == 401, (action, token)
    # hostile names never reach a command line; unknown actions are refused
    for name in ("--all", "web0%20--all", "nosuch"):
        assert _request(f"{url}/api/services/{name}/stop", "POST", token="right-token")[0] == 404
    assert _request(f"{url}/api/services/web0/kill", "POST", token="right-token")[0] == 404
    assert _request(f"{url}/api/services/web0/stop", "GET", token="right-token")[0] == 405
    assert _states(cli) == {"web0": "running", "web1": "running"}  # nothing was acted on
    code, body = _request(f"{url}/api/services/web0/stop", "POST", token="right-token")
    assert code == 200 and body["ok"] and "stopped" in body["message"]
    assert _states(cli) == {"web0": "stopped", "web1": "running"}


def test_on_loopback_other_host_names_are_refused(site):
    """A page on another site cannot reach it by DNS rebinding (the Host header is checked)."""
    serve, _cli = site
    url = serve()
    assert _request(f"{url}/api/status", host="attacker.example")[0] == 400
    assert _request(f"{url}/api/status", host="localhost")[0] == 200


def test_on_a_wildcard_address_the_host_header_is_checked_too(site):
    """With --host 0.0.0.0 it was not checked at all: the bound address, loopback names and
    --allow-host names are answered, any other Host is 400."""
    serve, _cli = site
    url = serve("--host", "0.0.0.0", "--allow-host", "tts.example")
    port = url.rsplit(":", 1)[1]
    local = f"http://127.0.0.1:{port}"
    assert _request(f"{local}/api/status", host="attacker.example")[0] == 400
    assert _request(f"{local}/api/status", host=f"tts.example:{port}")[0] == 200
    assert _request(f"{local}/api/status", host="127.0.0.1")[0] == 200


@pytest.mark.slow
def test_600_slow_header_connections_under_512_descriptors(site):
    """Half a header each, under a 512-descriptor limit: the oldest are closed to make
    room, /api/status still answers within 2 s, and the log is not flooded."""
    import socket
    import time

    serve, _cli = site
    url = serve(prefix=("prlimit", "--nofile=512:512"))
    host, port = url.split("//")[1].rsplit(":", 1)
    held: list[socket.socket] = []

    def connect(count: int) -> None:
        for _ in range(count):
            sock = socket.socket()
            sock.settimeout(20)
            try:
                sock.connect((host, int(port)))
                sock.sendall(b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            except OSError:
                sock.close()
                continue
            held.append(sock)

    import threading

    try:
        # ten clients at once: a connect that meets a full accept queue waits a second for
        # the kernel's SYN retry, and one client alone waited out 23 of them in a row
        clients = [threading.Thread(target=connect, args=(60,)) for _ in range(10)]
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        assert len(held) > 512  # past the descriptor limit: the oldest were closed
        started = time.monotonic()
        code, data = _request(f"{url}/api/status")
        assert code == 200 and {s["name"] for s in data["services"]} == {"web0", "web1"}
        assert time.monotonic() - started < 2
    finally:
        for sock in held:
            sock.close()


def test_a_taken_port_or_bad_host_is_one_line(site):
    serve, cli = site
    url = serve()
    port = url.rsplit(":", 1)[1]
    done = cli("web", "--port", port)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"--port {port}" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    done = cli("web", "--host", "no such host", "--port", "0")
    assert done.returncode == 2 and "--host" in done.stderr and "Traceback" not in done.stderr
    done = cli("web", "--port", "0", "--allow-host", "evil.example/path")
    assert done.returncode == 2 and "--allow-host" in done.stderr


@pytest.fixture
def browser():
    from tts_ops.testing.browser import chromium

    with chromium() as driver:
        yield driver


ROWS = ("return Array.from(document.querySelectorAll('#services tbody tr'))"
        ".map(r => [r.dataset.name, r.dataset.state])")


@pytest.mark.slow
def test_chromium_renders_every_service_and_follows_a_stop_and_a_start(site, browser):
    serve, cli = site
    url = serve("--refresh", "0.3", extra_env={"TTS_OPS_WEB_TOKEN": "tok"})
    browser.get(url + "/")

    def rows() -> dict[str, str]:
        return dict(browser.execute_script(ROWS))

    wait_for(lambda: rows() == {"web0": "running", "web1": "running"}, timeout=20,
             message="both services listed as running")
    browser.execute_script("window.sameDocument = true")
    # the operator stops one from a terminal: the page follows without a reload
    assert cli("stop", "web0").returncode == 0
    wait_for(lambda: rows().get("web0") == "stopped", timeout=20, message="the page shows the stop")
    assert rows()["web1"] == "running" and browser.execute_script("return window.sameDocument")
    # and starts it again from the page, with the token
    browser.execute_script("document.querySelector('#token').value = 'tok';"
                           "document.querySelector('tr[data-name=\"web0\"]"
                           " button[data-action=\"start\"]').click()")
    wait_for(lambda: rows().get("web0") == "running", timeout=30,
             message="the page's start button started it")
    assert _states(cli)["web0"] == "running"
    message = browser.execute_script("return document.querySelector('#message').textContent")
    assert message.startswith("start web0: web0: running")
    # a log line is text, never markup
    wait_for(lambda: HOSTILE_LINE in browser.execute_script(
        "return document.querySelector('#log').textContent"), timeout=20,
        message="the log tail shows the line")
    assert browser.execute_script("return document.getElementById('pwned') === null"
                                  " && window.pwned === undefined")
