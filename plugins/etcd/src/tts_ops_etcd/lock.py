"""The deploy lock of a service across hosts: a key created only if absent, bound to a
lease kept alive while the deploy runs. A deploy killed with SIGKILL frees it when the
lease runs out (its ttl); one that ends any other way deletes it.

A lock can be lost while its deploy still runs: the deploy was paused (SIGSTOP, a
suspended VM) or cut off from etcd for longer than ``lock_ttl``, and another host may
hold it now. The keeper notices (the lease's keep-alive answers that it expired, or no
keep-alive succeeded for ``lock_ttl``), sets ``lost`` and calls ``on_lost``: the deploy
engine aborts the deploy there, and rolls it back, rather than finish it beside another.
"""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any

from tts_ops.plugin import OperationFailed
from tts_ops_etcd.keys import b64, unb64

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
        #: why the lock was lost while held, or None
        self.lost: str | None = None
        #: called once, from the keeper's thread, when the lock is lost
        self.on_lost: Any = None
        self._renewed = 0.0

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
        self._renewed = time.monotonic()
        self._thread = threading.Thread(target=self._keep, daemon=True)
        self._thread.start()
        return self

    def _keep(self) -> None:
        ttl = self.store.options.lock_ttl
        due = self._renewed + ttl / 3
        while not self._stop.wait(0.2):
            now = time.monotonic()
            if now - self._renewed >= ttl:  # paused, or cut off, for the whole ttl
                self._lose(f"not renewed for {now - self._renewed:.0f}s, more than its"
                           f" lock_ttl of {ttl}s")
                return
            if now < due:
                continue
            try:
                answer = self.store.cluster.call("/lease/keepalive", {"ID": self.lease})
            except OperationFailed:
                due = now + 0.5
                continue  # etcd down: try again; the lease outlives a short outage
            result = answer.get("result", answer) if isinstance(answer, dict) else {}
            if int(result.get("TTL", 0) or 0) <= 0:
                self._lose("its lease expired in etcd")
                return
            self._renewed, due = now, now + ttl / 3

    def _lose(self, why: str) -> None:
        self.lost = why
        if self.on_lost is not None:
            self.on_lost()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.store.cluster.call("/lease/revoke", {"ID": self.lease})
        except OperationFailed:
            pass  # etcd is down: the lease runs out by itself
