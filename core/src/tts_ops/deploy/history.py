"""Deploy history: one JSON line per deploy in ``<state>/deploys.jsonl`` (appended, locked)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tts_ops.statefile import locked, open_nofollow, read_trusted


def append(state_dir: Path, record: dict[str, Any]) -> None:
    path = state_dir / "deploys.jsonl"
    with locked(state_dir / ".deploys.lock"), os.fdopen(
            open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "a",
            encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read(state_dir: Path) -> list[dict[str, Any]]:
    raw = read_trusted(state_dir / "deploys.jsonl")
    if raw is None:
        return []
    lines = raw.decode("utf-8", errors="replace").splitlines()
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
