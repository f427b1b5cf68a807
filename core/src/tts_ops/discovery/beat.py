"""One heartbeat from a manual-backend supervisor, in a forked child (keeps its RSS small)."""

from __future__ import annotations

from typing import Any

from tts_ops.discovery.record import InstanceRecord
from tts_ops.discovery.store import SqliteStore


def beat(path: str, record: dict[str, Any], health: str) -> None:
    store = SqliteStore(path)
    try:
        rec = InstanceRecord(**record)
        # passing: re-register a record that was removed; critical: never resurrect one
        store.heartbeat(rec.id, health=health, record=rec if health == "passing" else None)
    finally:
        store.close()
