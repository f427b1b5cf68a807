"""Running systemctl and journalctl for one scope, and parsing ``systemctl show``."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tts_ops import prefetch

SHOW_PROPS = ("Id", "LoadState", "ActiveState", "SubState", "Result", "MainPID", "NRestarts",
              "ExecMainCode", "ExecMainStatus", "ExecMainStartTimestampMonotonic",
              "ActiveEnterTimestampMonotonic", "MemoryCurrent", "CPUUsageNSec", "StatusText",
              "UnitFileState", "FragmentPath")


class SystemctlError(Exception):
    def __init__(self, args: list[str], code: int, stderr: str) -> None:
        text = stderr.strip().splitlines()
        super().__init__(text[0] if text else f"{' '.join(args)} exited {code}")
        self.code = code
        self.stderr = stderr


class Systemctl:
    def __init__(self, scope: str) -> None:
        self.scope = scope
        self.flag = ["--user"] if scope == "user" else []

    def run(self, *args: str, check: bool = True, timeout: float = 60.0
            ) -> subprocess.CompletedProcess:
        cmd = ["systemctl", *self.flag, *args]
        if not prefetch.read_only(cmd):
            prefetch.invalidate()  # an answer started before this change is stale after it
        try:
            # a query the last same command ran was started when this one started
            proc = prefetch.run(cmd, timeout=timeout)
        except FileNotFoundError:
            raise SystemctlError(cmd, 127, "systemctl is not installed") from None
        except subprocess.TimeoutExpired:
            raise SystemctlError(cmd, 124, f"{' '.join(cmd)} timed out after {timeout:g}s"
                                 ) from None
        if check and proc.returncode != 0:
            raise SystemctlError(cmd, proc.returncode, proc.stderr or proc.stdout)
        return proc

    def show(self, units: list[str]) -> dict[str, dict[str, str]]:
        """Properties of several units with one systemctl call."""
        if not units:
            return {}
        out = self.run("show", *units, "-p", ",".join(SHOW_PROPS), "--no-pager").stdout
        found: dict[str, dict[str, str]] = {}
        for block in out.strip().split("\n\n"):
            props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
            if "Id" in props:
                found[props["Id"]] = props
        return found

    def unit_dir(self) -> Path:
        if self.scope == "system":
            return Path("/etc/systemd/system")
        base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        return Path(base) / "systemd" / "user"

    def reachable(self) -> tuple[bool, str]:
        if self.scope == "user" and not os.environ.get("XDG_RUNTIME_DIR"):
            return False, "user scope: XDG_RUNTIME_DIR is not set, so no user manager is reachable"
        if self.scope == "system":
            try:
                pid1 = Path("/proc/1/comm").read_text().strip()
            except OSError:
                pid1 = "?"
            if pid1 != "systemd" or not Path("/run/systemd/system").is_dir():
                return False, f"system scope: PID 1 is {pid1}, not systemd"
        try:
            proc = self.run("is-system-running", check=False, timeout=5)
        except SystemctlError as exc:
            return False, f"{self.scope} scope: {exc}"
        state = proc.stdout.strip()
        if state in ("running", "degraded", "starting", "initializing", "maintenance"):
            return True, f"{self.scope} manager is {state}"
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        return False, f"{self.scope} scope: {detail[0] if detail else state or 'no answer'}"


def journal_running(path: str = "/run/systemd/journal/stdout") -> bool:
    """Whether journald answers, not merely whether its socket files exist.

    A journald that died leaves its sockets behind; sending units' output there would lose
    it, so the socket must accept a connection. (Asked when a unit is planned: a status
    needs only the units' names, `unit.instance_units`, and asks no journald.)
    """
    if not os.path.exists(path):
        return False
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


def monotonic_now_usec() -> int:
    import time

    return int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1_000_000)
