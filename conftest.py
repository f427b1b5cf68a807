"""For the whole test suite: nothing a test started may be left running when it ends."""

from __future__ import annotations

import os
import signal

import pytest


@pytest.fixture(scope="session", autouse=True)
def nothing_left_running(tmp_path_factory):
    base = str(tmp_path_factory.getbasetemp())
    yield
    import psutil

    left = []
    for proc in psutil.process_iter(["cmdline", "name"]):
        cmd = proc.info["cmdline"] or []
        supervisor = "tts_ops_manual.supervise" in cmd and proc.info["name"] != "tts-ops-keeper"
        if any(base in a for a in cmd) and (supervisor or "tts_ops.sockets.holder" in cmd):
            left.append((proc.pid, cmd[-1]))
            try:
                os.kill(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    if left:
        pytest.fail(f"supervisors or socket holders left running by the tests: {left}")
