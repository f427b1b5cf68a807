"""A cgroup (v2) per service generation, where the hierarchy is writable.

A process group holds what a service forks unless a child leaves it (``setsid``); a cgroup
holds everything, and ``cgroup.kill`` (Linux 5.14+) ends it all in one write. Where there is
no writable cgroup v2 hierarchy (a container, an unprivileged user), or
``TTS_OPS_CGROUPS=off``, callers fall back to the process group. Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

ENV = "TTS_OPS_CGROUPS"
PARENT = "tts-ops"


def root() -> Path | None:
    """Where cgroup v2 is mounted and writable by us, or None."""
    if os.environ.get(ENV, "").lower() in ("off", "0", "no", "false"):
        return None
    try:
        with open("/proc/self/mounts") as fh:
            mounts = [line.split() for line in fh]
    except OSError:
        return None
    for fields in mounts:
        if len(fields) >= 3 and fields[2] == "cgroup2":
            path = Path(fields[1].replace("\\040", " "))
            if os.access(path, os.W_OK):
                return path
    return None


def create(name: str) -> Path | None:
    """A new, empty cgroup ``tts-ops/NAME`` (None when cgroups are not usable here)."""
    base = root()
    if base is None:
        return None
    path = base / PARENT / name
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return path


def join(path: Path) -> bool:
    """Move the calling process into the cgroup (its future children are born there)."""
    try:
        (path / "cgroup.procs").write_text("0")
    except OSError:
        return False
    return True


def members(path: Path) -> list[int]:
    try:
        return [int(p) for p in (path / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def kill(path: Path) -> None:
    """SIGKILL every process in the cgroup, those that left the process group included."""
    try:
        (path / "cgroup.kill").write_text("1")
        return
    except OSError:
        pass  # an older kernel: one by one
    for _ in range(50):
        pids = members(path)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def remove(path: Path | None) -> None:
    """Remove the cgroup if it is empty; one still in use (a log compressor finishing) is
    left for the next start of the service to remove."""
    if path is None:
        return
    with contextlib.suppress(OSError):
        path.rmdir()


def sweep() -> None:
    """Remove the emptied cgroups of supervisors that are gone (``tts-ops/NAME.PID``): one
    whose supervisor exited on its own, or was still being reaped when it stopped."""
    base = root()
    if base is None:
        return
    try:
        entries = list((base / PARENT).iterdir())
    except OSError:
        return
    for path in entries:
        pid = path.name.rpartition(".")[2]
        if not path.is_dir() or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # its supervisor (or a process that took its pid) lives: leave it
        except ProcessLookupError:
            remove(path)
        except PermissionError:
            continue
