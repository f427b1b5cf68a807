"""The charts of the live views: each service's requests per second, p95 and errors over the
last 15 minutes with its deploys on the same axis, in the web page (a real headless
Chromium: DOM and a screenshot) and in ``top`` (a real terminal: tmux), around a real
blue_green deploy of the reference server under load."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from tts_ops.testing import free_port, wait_for
from tts_ops.testing.terminal import Terminal

pytestmark = pytest.mark.slow

CHART = ("const s = document.querySelector('svg.trend[data-service=\"tts\"]"
         "[data-metric=\"' + arguments[0] + '\"]');"
         " if (!s) return null;"
         " const p = s.querySelector('path.line');"
         " return {points: Number(s.dataset.points), d: p.getAttribute('d'),"
         " length: p.getTotalLength(), box: p.getBBox().height,"
         " deploys: Array.from(s.querySelectorAll('line.deploy')).map(l => l.dataset.id),"
         " label: s.querySelector('text.label').textContent}")


@pytest.fixture
def served(tmp_path):
    """The reference server (espeak) as service ``tts`` under the manual backend, and a
    client synthesizing on its address until the test ends."""
    port = free_port()
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [{
        "name": "tts", "engine_type": "espeak", "port": port, "process_manager": "manual",
        "restart_delay": 0, "start_timeout": 30,
        "deploy": {"drain_seconds": 0.5, "progress_deadline_seconds": 90}}]}))
    base = [sys.executable, "-m", "tts_ops", "-c", str(cfg), "--state-dir", str(tmp_path / "s")]
    env = {**os.environ, "TTS_OPS_PLUGINS": "manual,strategies"}
    env.pop("TTS_OPS_WEB_TOKEN", None)
    subprocess.run([*base, "start", "tts"], env=env, check=True, capture_output=True)
    stop = threading.Event()
    answers: list[int] = []

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        n = 0
        while not stop.is_set():
            n += 1
            try:
                conn.request("POST", "/synthesize", body=json.dumps({"text": f"chart {n}"}),
                             headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                answers.append(resp.status)
            except (OSError, http.client.HTTPException):
                answers.append(0)
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            stop.wait(0.05)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    try:
        yield base, env, answers
    finally:
        stop.set()
        thread.join(timeout=40)
        subprocess.run([*base, "stop", "--all", "--force"], env=env, capture_output=True)


def test_the_web_page_and_top_chart_traffic_and_deploys_on_one_axis(served, tmp_path):
    base, env, answers = served
    web = subprocess.Popen([*base, "web", "--port", "0", "--refresh", "0.5"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    term = Terminal(*base, "top", "--interval", "0.5", width=200, height=50,
                    plugins="manual,strategies")
    import contextlib

    from tts_ops.testing.browser import chromium

    stack = contextlib.ExitStack()
    try:
        first = web.stdout.readline()
        assert first.startswith("tts-ops web: http://"), first + web.stderr.read()
        url = first.split()[2].rstrip("/")
        browser = stack.enter_context(chromium("--window-size=1400,1000"))
        browser.get(url + "/")

        def chart(metric: str) -> dict | None:
            return browser.execute_script(CHART, metric)

        # the request rate is drawn: a line through several points, not flat
        wait_for(lambda: (c := chart("requests")) and c["points"] >= 3,
                 timeout=60, message="the requests chart to draw a line")
        before = chart("requests")
        assert before["d"].count("L") >= 2 and before["deploys"] == []
        assert chart("p95")["points"] >= 1  # syntheses finished: a p95 per point

        # a deploy, with the client still synthesizing on the address
        done = subprocess.run([*base, "deploy", "tts", "--strategy", "blue_green"], env=env,
                              capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
        (record,) = json.loads(subprocess.run([*base, "deploy", "history", "--json"], env=env,
                                              capture_output=True, text=True).stdout)
        deploy_id = record["id"]
        for metric in ("requests", "p95", "errors"):  # the same mark on every chart
            wait_for(lambda m=metric: deploy_id in ((chart(m) or {}).get("deploys") or []),
                     timeout=30, message=f"the deploy marked on the {metric} chart")
        # the service's line goes on after it: the new generation's samples join it
        count = chart("requests")["points"]
        wait_for(lambda: chart("requests")["points"] >= count + 3, timeout=60,
                 message="points from the new generation")
        assert 0 not in answers and set(answers) == {200}, sorted(set(answers))
        # the log panel: the service's serving generation, not empty
        wait_for(lambda: browser.execute_script(
            "return document.querySelector('#log-name').value") == "tts"
            and '"event"' in browser.execute_script(
                "return document.querySelector('#log').textContent"), timeout=30,
                 message="the log panel to show the serving generation's lines")
        # and a screenshot of the charts: drawn, of the chart's size
        shot = browser.find_element("css selector", 'svg.trend[data-metric="requests"]'
                                    ).screenshot_as_png
        (tmp_path / "requests.png").write_bytes(shot)
        assert shot[:8] == b"\x89PNG\r\n\x1a\n"
        width = int.from_bytes(shot[16:20], "big")
        assert width >= 320, width
        blank = browser.find_element("css selector", 'svg.trend[data-metric="errors"]'
                                     ).screenshot_as_png
        assert blank != shot  # a flat errors line is not the request rate's line

        # top: the selected service's sparklines and the deploy's ^ on the same axis
        def screen() -> str:
            return term.screen()

        wait_for(lambda: "up to 15 minutes" in screen() and "^" in _line(screen(), "deploy")
                 and any(c in _line(screen(), "req/s") for c in "▂▃▄▅▆▇█"), timeout=60,
                 message="top's sparklines and the deploy mark")
        rate = _line(screen(), "req/s")
        mark = _line(screen(), "deploy")
        # the mark is under a column that has samples: the same time axis
        column = mark.index("^")
        assert rate[column - 2:column + 3].strip(), (rate, mark)
    except AssertionError:
        print(term.screen())
        raise
    finally:
        stack.close()
        term.close()
        web.send_signal(signal.SIGINT)
        _out, err = web.communicate(timeout=20)
        assert "Traceback" not in err, err


def _line(screen: str, label: str) -> str:
    return next((ln for ln in screen.splitlines() if ln.strip().startswith(label)), "")
