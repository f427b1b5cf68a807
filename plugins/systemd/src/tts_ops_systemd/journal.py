"""The ``journald`` log sink: a unit's records from ``journalctl -o json``."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator


class JournaldSink:
    name = "journald"

    def __init__(self, unit: str, scope: str) -> None:
        self.unit = unit
        self.flag = ["--user"] if scope == "user" else []

    def _cmd(self, *extra: str) -> list[str]:
        return ["journalctl", *self.flag, "-u", self.unit, "-o", "json", "--no-pager", *extra]

    def lines(self, skip: Callable[[str], None]) -> Iterator[bytes]:
        """Each entry's MESSAGE as a line (the reference server's are JSON lines)."""
        try:
            proc = subprocess.Popen(self._cmd(), stdout=subprocess.PIPE)
        except FileNotFoundError:
            skip("journalctl is not installed")
            return
        assert proc.stdout is not None
        for raw in proc.stdout:
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            message = entry.get("MESSAGE")
            if isinstance(message, list):  # journald stores non-UTF-8 text as bytes
                message = bytes(message).decode("utf-8", "replace")
            if not isinstance(message, str):
                continue
            if not message.startswith("{"):
                usec = int(entry.get("__REALTIME_TIMESTAMP", 0))
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(usec / 1e6))
                message = f"{stamp} {message}"
            yield (message + "\n").encode()
        proc.wait()

    def follow(self, stop: Callable[[], bool]) -> Iterator[str]:
        with subprocess.Popen(self._cmd("-f", "-n", "0"), stdout=subprocess.PIPE,
                              text=True) as proc:
            assert proc.stdout is not None
            for raw in proc.stdout:
                if stop():
                    proc.terminate()
                    break
                try:
                    yield json.loads(raw).get("MESSAGE", "")
                except ValueError:
                    continue
