"""The deploy lock of a service across hosts: a key created only if absent, bound to a
lease kept alive while the deploy runs. A deploy killed with SIGKILL frees it when the
lease runs out (its ttl); one that ends any other way deletes it."""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any

from tts_ops.plugin import OperationFailed
from tts_ops_etcd.cluster import b64, unb64

if TYPE_CHECKING:
    from tts_ops_etcd.store import EtcdStore


class EtcdLock:
    def __init__(self, store: EtcdStore, service: str, holder: dict[str, Any]) -> None:
        self.store = store
        self.service = service
        self.key = f"{store.options.prefix.rstrip('/')}/locks/deploy-{service}"
        self.holder = {**holder, "node": store.node}
        self.lease = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> EtcdLock:
        cluster = self.store.cluster
        self.lease = int(cluster.call("/lease/grant", {"TTL": self.store.options.lock_ttl})["ID"])
        answer = cluster.call("/kv/txn", {
            "compare": [{"key": b64(self.key), "target": "CREATE", "result": "EQUAL",
                         "create_revision": 0}],
            "success": [{"request_put": {"key": b64(self.key), "lease": self.lease,
                                         "value": b64(json.dumps(self.holder))}}],
            "failure": [{"request_range": {"key": b64(self.key)}}]})
        if not answer.get("succeeded"):
            cluster.call("/lease/revoke", {"ID": self.lease})
            kvs = answer["responses"][0]["response_range"].get("kvs", [])
            other = json.loads(unb64(kvs[0]["value"])) if kvs else {}
            since = time.strftime("%H:%M:%S", time.localtime(other.get("since", 0)))
            raise OperationFailed(
                f"{self.service}: another deploy is in progress on {other.get('node', '?')}"
                f" (pid {other.get('pid', '?')}, since {since}: {other.get('cmd', '?')});"
                " wait for it to finish")
        self._thread = threading.Thread(target=self._keep, daemon=True)
        self._thread.start()
        return self

    def _keep(self) -> None:
        while not self._stop.wait(self.store.options.lock_ttl / 3):
            try:
                self.store.cluster.call("/lease/keepalive", {"ID": self.lease})
            except OperationFailed:
                continue  # etcd down: try again; the lease outlives a short outage

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.store.cluster.call("/lease/revoke", {"ID": self.lease})
        except OperationFailed:
            pass  # etcd is down: the lease runs out by itself
