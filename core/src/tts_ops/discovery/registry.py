"""`ServiceRegistry`: the seed's registry API, over any registry store.

Every change is passed to ``emit`` (the ``tts_ops_registry_changed`` hook when the CLI
builds it), in this process; other processes follow the store's change sequence.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tts_ops.discovery.record import InstanceRecord
from tts_ops.discovery.store import SqliteStore

DEFAULT_DEREGISTER_AFTER = 60.0


class ServiceRegistry:
    def __init__(self, path: str | Path | None = None, *, store: Any = None,
                 emit: Callable[..., None] | None = None,
                 deregister_after: float = DEFAULT_DEREGISTER_AFTER) -> None:
        if store is None:
            if path is None:
                raise ValueError("ServiceRegistry needs a path or a store")
            store = SqliteStore(path)
        self.store = store
        self.emit = emit or (lambda hook, **kw: None)
        self.deregister_after = deregister_after

    def _changed(self, change: dict | None) -> dict | None:
        if change is not None:
            self.emit("tts_ops_registry_changed", change=change)
        return change

    # --- the seed's API ---

    def register_service(self, info: InstanceRecord | dict[str, Any]) -> InstanceRecord:
        record = info if isinstance(info, InstanceRecord) else InstanceRecord.from_input(info)
        self._changed(self.store.register(record))
        return record

    def deregister_service(self, instance_id: str) -> bool:
        return self._changed(self.store.deregister(instance_id)) is not None

    def heartbeat(self, instance_id: str, *, health: str | None = None,
                  record: InstanceRecord | None = None) -> bool:
        """Refresh an instance; a heartbeat with its record re-registers it if it was removed."""
        found, change = self.store.heartbeat(instance_id, health=health, record=record)
        self._changed(change)
        return found

    def find_services(self, service_type: str | None = None, healthy_only: bool = False,
                      service: str | None = None) -> list[InstanceRecord]:
        now = time.time()
        found = self.store.list(service=service, service_type=service_type)
        if healthy_only:
            found = [r for r in found if r.effective_health(now) == "passing"]
        return found

    def cleanup_stale_services(self, deregister_after: float | None = None) -> list[str]:
        limit = self.deregister_after if deregister_after is None else deregister_after
        changes = self.store.cleanup(limit)
        for change in changes:
            self._changed(change)
        return [c["id"] for c in changes]

    # --- more ---

    def get(self, instance_id: str) -> InstanceRecord | None:
        return self.store.get(instance_id)

    def set_weight(self, instance_id: str, weight: int) -> bool:
        return self._changed(self.store.update(instance_id, weight=weight)) is not None

    def set_health(self, instance_id: str, health: str) -> bool:
        return self._changed(self.store.update(instance_id, health=health)) is not None

    def changes(self, since: int, service: str | None = None) -> list[dict]:
        return self.store.changes(since, service)

    def last_seq(self, service: str | None = None) -> int:
        return self.store.last_seq(service)
