"""One heartbeat from a manual-backend supervisor, in a forked child (keeps its RSS small),
through the configured registry's store like every other write."""

from __future__ import annotations

from typing import Any

from tts_ops.discovery.record import InstanceRecord


def beat(registry: str, location: Any, record: dict[str, Any], health: str,
         weights: str | None = None) -> None:
    """``weights``: the host's kept weights (`tts_ops.discovery.weights`): a record
    registered again comes back with the weight last set for it, not its initial one."""
    from tts_ops.discovery.registry import open_named

    store = open_named(registry, location)
    try:
        rec = with_kept_weight(InstanceRecord(**record), weights)
        # passing: re-register a record that was removed; critical: never resurrect one
        store.heartbeat(rec.id, health=health, record=rec if health == "passing" else None)
    finally:
        store.close()


def with_kept_weight(record: InstanceRecord, weights: str | None) -> InstanceRecord:
    from dataclasses import replace

    from tts_ops.discovery.weights import kept

    weight = kept(weights, record.id, record.release)
    return record if weight is None else replace(record, weight=weight)
