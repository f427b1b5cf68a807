"""Members that did not answer lately, remembered between commands.

Each command is a new process: without memory, every one of them would try a dead member
first (the first of ``endpoints``) and pay its timeout before the next. A member that
failed to connect is written here, with the time until which it is tried last; one that
answers again is taken off. The file is small, private to the user (``0600`` in a
``0700`` directory of ``$XDG_CACHE_HOME``, else ``~/.cache``), written atomically and read
only when it is the user's own regular file: what it holds only orders the endpoints the
config lists, never adds one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from tts_ops.statefile import atomic_write_json, private_dir, read_json

#: seconds a member that failed is tried after the others
DOWN_FOR = 60.0


def state_file() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "tts-ops" / "etcd-down.json"


def load(path: Path | None = None) -> dict[str, float]:
    """Endpoint -> the time (epoch seconds) until which it is tried last."""
    try:
        data = read_json(path or state_file())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    now = time.time()
    return {k: float(v) for k, v in data.items()
            if isinstance(k, str) and isinstance(v, int | float) and v > now}


def save(marks: dict[str, float], path: Path | None = None) -> None:
    """Best effort: a cache that cannot be written (a full disk, a read-only home) only
    costs the next command a timeout."""
    target = path or state_file()
    try:
        private_dir(target.parent)
        atomic_write_json(target, marks, durable=False)
    except (OSError, ValueError):
        pass


def order(endpoints: list[str], marks: dict[str, float]) -> list[int]:
    """Indexes of ``endpoints``: those not marked down first, in the configured order."""
    return sorted(range(len(endpoints)), key=lambda i: (endpoints[i] in marks, i))
