"""`ServiceRegistry`: the seed's registry API, over any registry store.

Every change is passed to ``emit`` (the ``tts_ops_registry_changed`` hook when the CLI
builds it), in this process; other processes follow the store's change sequence.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tts_ops.discovery.record import InstanceRecord, node_of

DEFAULT_DEREGISTER_AFTER = 60.0
#: the core's own keys of the ``discovery`` section; the rest is the registry plugin's
CORE_FIELDS = ("registry", "path", "ttl", "deregister_after", "auto_register", "service_type",
               "advertise")


def registry_options(settings: Any) -> dict[str, Any]:
    """The keys of a ``discovery`` section (model or view) that its registry plugin takes."""
    return {k: v for k, v in settings.model_dump(mode="json").items() if k not in CORE_FIELDS}


def open_store(location: str | Path) -> Any:
    """A path: the file registry; ``NAME://...``: the registry plugin named ``NAME``
    (``etcd://10.0.0.1:2379,10.0.0.2:2379/tts-ops``), found among the installed plugins."""
    text = str(location)
    scheme, sep, rest = text.partition("://")
    if not sep:
        return open_named("file", text)
    return open_named(scheme, rest if scheme == "file" else text)


def open_named(name: str, location: Any, host: Any = None) -> Any:
    """The store of the registry registered as ``name``, at ``location``: a path for the
    file registry; for a registry whose registration carries an options model, the
    ``discovery`` section as a dict (validated here) or a URL."""
    if name == "file" and host is None:
        from tts_ops.discovery.store import SqliteStore  # the core's own: no plugin scan

        return SqliteStore(location)
    if host is None:
        from tts_ops.plugins import PluginHost

        host = PluginHost()
    reg = host.lookup("registry", name)
    load = reg.info.get("options")
    if load is not None and isinstance(location, dict):
        location = load().model_validate(location)
    return reg.factory(location)


class ServiceRegistry:
    def __init__(self, path: str | Path | None = None, *, store: Any = None,
                 emit: Callable[..., None] | None = None,
                 deregister_after: float = DEFAULT_DEREGISTER_AFTER,
                 weights: Path | None = None) -> None:
        #: the host's copy of the weights it set (`tts_ops.discovery.weights`), if kept
        self.weights = weights
        if store is None:
            if path is None:
                raise ValueError("ServiceRegistry needs a path, a registry URL or a store")
            store = open_store(path)
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
        if self.weights is not None:  # a new incarnation: its own weight
            from tts_ops.discovery import weights

            weights.forget(self.weights, record.id.split(":")[0])
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
        change = self._changed(self.store.update(instance_id, weight=weight))
        if change is not None and self.weights is not None and self.is_local(change["id"]):
            from tts_ops.discovery import weights

            weights.save(self.weights, change["id"].split(":")[0], weight,
                         (change.get("record") or {}).get("release"))
        return change is not None

    def set_health(self, instance_id: str, health: str) -> bool:
        return self._changed(self.store.update(instance_id, health=health)) is not None

    def changes(self, since: int, service: str | None = None) -> list[dict]:
        return self.store.changes(since, service)

    def last_seq(self, service: str | None = None) -> int:
        return self.store.last_seq(service)

    def follow(self, since: int, service: str | None = None,
               stop: Callable[[], bool] = lambda: False) -> Iterator[dict]:
        """Changes after ``since`` as they happen: the store's own feed (an etcd watch),
        else its change sequence read every 0.1 s."""
        from tts_ops.contracts import ChangeFeed

        if isinstance(self.store, ChangeFeed):
            yield from self.store.follow(since, service, stop)
            return
        while not stop():
            changes = self.store.changes(since, service)
            for change in changes:
                since = change["seq"]
                yield change
            if not changes:
                time.sleep(0.1)

    def is_local(self, rid: str) -> bool:
        """Whether an instance runs on this host (always, for a one-host registry)."""
        from tts_ops.contracts import SharedRegistry

        if not isinstance(self.store, SharedRegistry):
            return True
        return node_of(rid) in (None, self.store.node)

    def deploy_lock(self, service: str, holder: dict[str, Any]) -> Any:
        """Held around a deploy beside the host's own lock: a shared registry's (etcd) keeps
        two hosts from deploying one service at once."""
        from tts_ops.contracts import SharedRegistry

        if isinstance(self.store, SharedRegistry):
            return self.store.deploy_lock(service, holder)
        return contextlib.nullcontext()
