"""The ``journald`` log sink: a unit's records from ``journalctl -o json``."""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from collections.abc import Callable, Iterator


def journal_command(unit: str, output: str, *extra: str) -> list[str]:
    """journalctl for one unit's entries, whether journald filed it as a system or a user unit.

    A user manager's units are normally ``_SYSTEMD_USER_UNIT``; one that runs outside a
    user@.service slice (as in containers) gets ``_SYSTEMD_UNIT``: match either (``+`` ORs).
    """
    return ["journalctl", f"_SYSTEMD_UNIT={unit}", "+", f"_SYSTEMD_USER_UNIT={unit}", "-o",
            output, "--no-pager", *extra]


class JournaldSink:
    name = "journald"

    def __init__(self, unit: str, scope: str) -> None:
        self.unit = unit
        self.scope = scope

    def _cmd(self, *extra: str, output: str = "json") -> list[str]:
        return journal_command(self.unit, output, *extra)

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
            message = _message(entry)
            if message is not None:
                yield (message + "\n").encode()
        proc.wait()

    def follow(self, stop: Callable[[], bool]) -> Iterator[str]:
        """New entries until ``stop()``, asked at least every 0.2 s even when the unit is
        silent (waiting on journalctl's next line alone, a stop waited for it)."""
        with subprocess.Popen(self._cmd("-f", "-n", "0"), stdout=subprocess.PIPE) as proc:
            assert proc.stdout is not None
            fd = proc.stdout.fileno()
            pending = b""
            try:
                while not stop():
                    readable, _w, _x = select.select([fd], [], [], 0.2)
                    if not readable:
                        continue
                    chunk = os.read(fd, 1 << 16)
                    if not chunk:
                        break  # journalctl ended
                    *lines, pending = (pending + chunk).split(b"\n")
                    for raw in lines:
                        try:
                            entry = json.loads(raw)
                        except ValueError:
                            continue
                        message = _message(entry) if isinstance(entry, dict) else None
                        if message is not None:
                            yield message
            finally:
                proc.terminate()


def _message(entry: dict) -> str | None:
    """An entry as a log line: its MESSAGE, a plain one after journald's time of it (a
    JSON line carries its own), the same in `JournaldSink.lines` and `JournaldSink.follow`."""
    message = entry.get("MESSAGE")
    if isinstance(message, list):  # journald stores non-UTF-8 text as bytes
        message = bytes(message).decode("utf-8", "replace")
    if not isinstance(message, str):
        return None
    if not message.startswith("{"):
        usec = int(entry.get("__REALTIME_TIMESTAMP", 0))
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(usec / 1e6))
        message = f"{stamp} {message}"
    return message
