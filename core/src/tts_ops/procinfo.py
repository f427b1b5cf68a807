"""Process identity from /proc: PID plus start time, never a bare PID. Standard library only."""

from __future__ import annotations

import functools
import os
import signal


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = data[data.rindex(b")") + 2 :].split()
    if fields[0] == b"Z":  # a zombie is not running
        return None
    return int(fields[19])


def is_alive(pid: int | None, ticks: int | None) -> bool:
    """True when ``pid`` runs and is the same process that started at ``ticks``."""
    if not pid or ticks is None:
        return False
    return start_ticks(pid) == ticks


_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@functools.cache  # the boot time does not change while we run
def _boot_time() -> float:
    with open("/proc/stat", "rb") as fh:
        for line in fh:
            if line.startswith(b"btime"):
                return float(line.split()[1])
    return 0.0


def usage(pids: list[int]) -> tuple[float, int] | None:
    """Average CPU percent since each process started, summed, and total RSS in bytes.

    None when the first pid does not exist. Read from /proc/PID/stat: cheaper than psutil.
    """
    import time

    now = time.time()
    boot = _boot_time()
    cpu = 0.0
    rss = 0
    for i, pid in enumerate(pids):
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            if i == 0:
                return None
            continue
        f = data[data.rindex(b")") + 2 :].split()
        used = (int(f[11]) + int(f[12])) / _CLK_TCK
        age = max(now - (boot + int(f[19]) / _CLK_TCK), 1e-3)
        cpu += used / age * 100
        try:  # statm, not stat's rss field: that one is an approximate per-thread counter
            with open(f"/proc/{pid}/statm", "rb") as fh:
                rss += int(fh.read().split()[1]) * _PAGE
        except OSError:
            continue
    return round(cpu, 1), rss


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc/PID/task/*/children; empty if it is gone)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as fh:
                found.extend(int(c) for c in fh.read().split())
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    """``pid``'s children, their children, and so on."""
    out: list[int] = []
    todo = children(pid)
    while todo:
        child = todo.pop()
        out.append(child)
        todo.extend(children(child))
    return out


def group_members(pgid: int) -> list[int]:
    """PIDs (not zombies) whose process group is ``pgid``."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        fields = data[data.rindex(b")") + 2 :].split()
        if fields[0] != b"Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def group_exists(pgid: int) -> bool:
    """Whether any process (zombies included) is left in process group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> bool:
    """Signal a process group; False if it has no member left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def port_holder(port: int) -> str:
    """`` by NAME (pid N)``: the process listening on ``port``, when it can be told."""
    try:
        import psutil

        for conn in psutil.net_connections(kind="inet"):
            listening = conn.status == psutil.CONN_LISTEN
            if conn.laddr and conn.laddr.port == port and listening and conn.pid:
                return f" by {psutil.Process(conn.pid).name()} (pid {conn.pid})"
    except Exception:  # another user's process, a race with its exit: not told
        pass
    return ""
