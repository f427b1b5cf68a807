"""What discovery promises every process backend, through the real CLI: a running
service's record stays passing past its ``ttl`` (whoever sends its heartbeats: the manual
supervisor, or the keeper a backend runs beside it), and after ``stop`` it is gone and
stays gone (no heartbeat in flight brings it back).

    from tts_ops.testing.heartbeats import check_record_outlives_ttl

    def test_my_backend_keeps_records(tmp_path, my_manager):
        check_record_outlives_ttl(tmp_path, "mine", ["--my-flag", "x"])
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tts_ops.testing import DUMMY, free_port

TTL = 3.0


def check_record_outlives_ttl(tmp_path: Path, process_manager: str,
                              flags: list[str] | tuple[str, ...] = (),
                              discovery: dict[str, Any] | None = None,
                              name: str = "kept") -> None:
    port = free_port()
    cfg = tmp_path / "kept.json"
    cfg.write_text(json.dumps({
        "discovery": {"ttl": TTL, **(discovery or {})},
        "services": [{"name": name, "port": port, "notify": True, "restart_delay": 0,
                      "process_manager": process_manager,
                      "command": [*DUMMY, "--port", str(port)]}]}))
    base = [sys.executable, "-m", "tts_ops", "-c", str(cfg), "--state-dir",
            str(tmp_path / "kept-state")]

    def cli(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([*base, *args, *flags] if args[0] in ("start", "stop") else
                              [*base, *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{args}: {done.stderr}"
        return done

    def listed() -> dict[str, str]:
        out = cli("discovery", "list", "--all", "--json").stdout
        # by service: a registry may qualify ids (etcd: NAME:NODE)
        return {r["service"]: r["effective_health"] for r in json.loads(out or "[]")}

    cli("start")
    try:
        # half as long again as the ttl, looked at all along: without heartbeats it would
        # go after one ttl
        until = time.monotonic() + 1.5 * TTL
        while time.monotonic() < until:
            assert listed() == {name: "passing"}
    finally:
        cli("stop", "--all")
    assert listed() == {}
    # a heartbeat sent after the stop would register it again within one interval (1 s)
    settle = time.monotonic() + 1.5
    while time.monotonic() < settle:
        assert listed() == {}
