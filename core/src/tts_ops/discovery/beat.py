"""One heartbeat from a manual-backend supervisor, in a forked child (keeps its RSS small),
through the configured registry's store like every other write."""

from __future__ import annotations

from typing import Any

from tts_ops.discovery.record import InstanceRecord


def beat(registry: str, location: Any, record: dict[str, Any], health: str) -> None:
    from tts_ops.discovery.registry import open_named

    store = open_named(registry, location)
    try:
        rec = InstanceRecord(**record)
        # passing: re-register a record that was removed; critical: never resurrect one
        store.heartbeat(rec.id, health=health, record=rec if health == "passing" else None)
    finally:
        store.close()
