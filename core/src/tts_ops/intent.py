"""Operator intent: which services an operator stopped, and wants left stopped.

``stop`` (and ``orchestrate stop``) record "stopped"; ``start``, ``restart``, ``deploy`` and
``orchestrate start`` record "running". The orchestration monitor restarts a service that
went down only when its intent is not "stopped": a stop somebody asked for is not a failure.
Kept in ``<state>/intent.json``, written atomically under a lock.
"""

from __future__ import annotations

import time
from pathlib import Path

from tts_ops.statefile import atomic_write_json, locked, read_json

STOPPED = "stopped"
RUNNING = "running"


def _path(state_dir: Path) -> Path:
    return state_dir / "intent.json"


def record(state_dir: Path, names: list[str], wanted: str) -> None:
    if not names:
        return
    with locked(state_dir / ".intent.lock"):
        data = read(state_dir)
        for name in names:
            data[name] = {"wanted": wanted, "since": time.time()}
        atomic_write_json(_path(state_dir), data)


def read(state_dir: Path) -> dict[str, dict]:
    try:
        data = read_json(_path(state_dir))
    except ValueError:
        data = None
    return data if isinstance(data, dict) else {}


def stopped(state_dir: Path) -> set[str]:
    """Services an operator stopped and has not started since."""
    return {name for name, v in read(state_dir).items()
            if isinstance(v, dict) and v.get("wanted") == STOPPED}
