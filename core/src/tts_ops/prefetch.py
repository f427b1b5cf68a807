"""Read-only commands an invocation ran last time, started again the moment it starts.

``tts-ops status`` of systemd units waits a third of its time for ``systemctl show``,
and before that spends as long importing click and the plugins. A backend that runs such
a read-only query calls `run` instead of `subprocess.run`; the next invocation with the
same command line, working directory and environment starts those queries from the
``tts-ops`` entry point (`start`, before anything else is imported), so they run while
Python imports the rest, and `run` hands the backend their output instead of running them
again. Nothing else changes: `run` uses an early result only for the very same argv and
environment (a stale plan costs one wasted query, never a wrong answer), and a query no
one asked for is killed at exit.

A caller that changes what the queries report (``systemctl stop``) calls `invalidate`
first: an answer started before the change is not the answer after it.

A plan is an argv to run, so it is kept like the validated-config cache: in the state
dir's private ``cache`` directory (0700), opened without following links and only if it
is ours; and only a read-only query (``systemctl [--user] show ...``) is ever started
from one. Standard library only.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import subprocess

PLAN_VERSION = "1"
MAX_PLANS = 64  # per state dir: the oldest go (one per command line that asked systemd)

_key: str | None = None  # this invocation's key, once `start` ran
_plan_file: str | None = None
_planned: list[list[str]] = []  # what the plan said
_wanted: list[list[str]] = []  # what `run` was asked this time
_early: dict[tuple[str, ...], tuple[float, subprocess.Popen]] = {}
#: an answer started longer ago than this is not used (``web`` asks minutes later)
FRESH_S = 2.0
_environ: dict[str, str] = {}


def start(argv: list[str]) -> None:
    """Start the queries the last invocation with this command line ran (``argv`` is the
    command line after the program name). Never raises: a prefetch is only a head start."""
    global _key, _plan_file
    try:
        state_dir = _state_dir(argv)
        # a digest, never the values: the environment holds secrets (TTS_OPS_WEB_TOKEN)
        _key = hashlib.sha256("\0".join([
            PLAN_VERSION, os.getcwd(), str(os.geteuid()), *argv, "\0env",
            *(f"{k}={v}" for k, v in sorted(os.environ.items()))]).encode()).hexdigest()
        name = f"{_key[:8]}.plan"
        _plan_file = os.path.join(state_dir, "cache", "prefetch", name)
        _planned[:] = _read_plan(_plan_file, _key)
    except Exception:  # an unreadable plan is no plan, never the end of the command
        _key = None
        return
    atexit.register(_end)
    if not _planned:
        return
    import subprocess

    _environ.update(os.environ)
    for query in _planned:
        try:
            _early[tuple(query)] = (time.monotonic(), subprocess.Popen(
                query, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True))
        except OSError:
            continue


def run(argv: list[str], timeout: float) -> subprocess.CompletedProcess:
    """``subprocess.run(argv, capture_output=True, text=True, timeout=timeout)``, answered
    by the query started early if there is one for this argv, and remembered for the
    next invocation."""
    import subprocess

    if _key is not None and read_only(argv) and list(argv) not in _wanted:
        _wanted.append(list(argv))
    began, proc = _early.pop(tuple(argv), (0.0, None))
    if proc is not None:
        if dict(os.environ) == _environ and time.monotonic() - began <= FRESH_S:
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                raise subprocess.TimeoutExpired(argv, timeout) from None
            return subprocess.CompletedProcess(argv, proc.returncode, out, err)
        _kill(proc)  # the environment changed since, or it is old: not this one's answer
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def invalidate() -> None:
    """Drop every answer started early: the caller is about to change what they report."""
    while _early:
        _kill(_early.popitem()[1][1])


def read_only(argv: list[str]) -> bool:
    """Whether a plan may hold ``argv``: ``systemctl [--user|--system] show ...`` (the
    ``systemctl`` of ``$PATH``, as every other call runs it)."""
    args = [a for a in argv[1:] if a not in ("--user", "--system")]
    return bool(args) and argv[0] == "systemctl" and args[0] == "show"


def save() -> None:
    """Write this invocation's plan if it differs from the one it found."""
    if _key is None or _plan_file is None or _wanted == _planned:
        return
    from pathlib import Path

    from tts_ops.statefile import atomic_write_bytes, private_dir

    try:
        private_dir(Path(_plan_file).parent, 0o700)
        atomic_write_bytes(Path(_plan_file), _encode(_key, _wanted), durable=False)
        _prune(Path(_plan_file).parent)
    except Exception:  # only a head start for next time, never an exit code
        pass
    _planned[:] = _wanted


def _prune(directory: Any) -> None:
    plans = sorted(directory.glob("*.plan"), key=lambda p: p.stat().st_mtime_ns)
    for stale in plans[:-MAX_PLANS]:
        stale.unlink(missing_ok=True)


def _state_dir(argv: list[str]) -> str:
    from tts_ops.config.paths import state_dir_name

    explicit = None
    for i, arg in enumerate(argv):
        if arg == "--state-dir" and i + 1 < len(argv):
            explicit = argv[i + 1]
        elif arg.startswith("--state-dir="):
            explicit = arg.partition("=")[2]
    return state_dir_name(explicit)


def _encode(key: str, queries: list[list[str]]) -> bytes:
    return "\n".join([key, *("\0".join(q) for q in queries)]).encode()


def _read_plan(path: str, key: str) -> list[list[str]]:
    if not os.path.lexists(path):
        return []  # the usual miss costs no import
    from tts_ops.statefile import open_nofollow

    try:
        fd = open_nofollow(path, os.O_RDONLY)
    except FileNotFoundError:
        return []
    with os.fdopen(fd, "rb") as fh:
        lines = fh.read(1 << 20).decode().split("\n")
    if lines[0] != key:
        return []  # another invocation's plan under the same name
    queries = [line.split("\0") for line in lines[1:] if line]
    return [q for q in queries if read_only(q)]


def _kill(proc: Any) -> None:
    try:
        proc.kill()
    except OSError:
        pass
    proc.communicate()


def _end() -> None:
    invalidate()
    save()
