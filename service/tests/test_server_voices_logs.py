"""Every voice tts-server offers speaks, and every line it writes is JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx

from tts_server.audio import inspect_wav


def test_every_listed_voice_speaks(start_server):
    # the bundled data lacks the dictionaries of fo, kaa and xex: they spoke only silence
    server = start_server("--espeak-source", "bundled")
    voices = [v["name"] for v in httpx.get(f"{server.url}/voices").json()["voices"]]
    assert not {"fo", "kaa", "xex"} & set(voices)
    assert {"en", "hyw", "nb", "ltg"} <= set(voices)  # they use another language's dictionary
    quiet = []
    with httpx.Client(timeout=30) as client:
        for voice in voices:
            resp = client.post(f"{server.url}/synthesize", json={"text": "a b c", "voice": voice})
            assert resp.status_code == 200, (voice, resp.text)
            if inspect_wav(resp.content).rms < 50:
                quiet.append(voice)
    assert quiet == []
    log = [json.loads(line) for line in server.log_path.read_text().splitlines()]
    dropped = {r["voice"] for r in log if r.get("event") == "voice_dropped"}
    assert dropped == {"fo", "kaa", "xex"}


def test_every_line_the_server_writes_is_json(start_server):
    server = start_server("--espeak-source", "bundled")
    httpx.post(f"{server.url}/synthesize", json={"text": "hello"})
    server.stop()
    lines = server.log_path.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # raises on any line that is not JSON
    # espeak-ng's own C-level complaints (the probe of voices with missing data) are there
    assert any(r.get("event") == "stderr" and "dictionary" in r["msg"] for r in records)


def test_raw_stderr_and_a_dying_traceback_become_json_records():
    code = ("import os; from tts_server.logs import setup_logging, capture_stderr;"
            " setup_logging('INFO'); capture_stderr();"
            " os.write(2, b'a C library says hello\\n'); raise RuntimeError('boom')")
    # stdout and stderr into one log, as every backend runs a service
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=30)
    assert out.returncode == 1
    records = [json.loads(line) for line in out.stdout.splitlines()]
    messages = [r["msg"] for r in records if r.get("event") == "stderr"]
    assert "a C library says hello" in messages
    assert "RuntimeError: boom" in messages  # the traceback's last line, kept at exit
    # with stderr elsewhere (a terminal, say) it is left as it is, for a person to read
    apart = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=30)
    assert "a C library says hello" in apart.stderr and "RuntimeError: boom" in apart.stderr


def test_metrics_with_two_workers_add_up_and_never_go_back(start_server):
    import os
    import signal

    import psutil

    server = start_server("--workers", "2")
    seen = []
    with httpx.Client(timeout=30) as client:
        for i in range(12):
            assert client.post(f"{server.url}/synthesize", json={"text": f"hi {i}"}
                               ).status_code == 200
            # new connections: the scrapes land on either worker
            seen.append(_synth_count(httpx.get(f"{server.url}/metrics").text))
    assert seen == sorted(seen) and seen[-1] == 12, seen
    from tts_ops.testing import live_children, wait_for

    master = psutil.Process(server.proc.pid)
    for worker in master.children():  # both of them, one by one: their counts stay in the sum
        os.kill(worker.pid, signal.SIGKILL)
        wait_for(lambda w=worker: len(live_children(master.pid) - {w.pid}) == 2,
                 message="a replacement worker")
    wait_for(lambda: httpx.get(f"{server.url}/ready").status_code == 200)
    after = [_synth_count(httpx.get(f"{server.url}/metrics").text) for _ in range(6)]
    assert min(after) >= 12, after


def _synth_count(text: str) -> int:
    total = 0
    for line in text.splitlines():
        if line.startswith('tts_requests_total{') and 'path="/synthesize"' in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total
