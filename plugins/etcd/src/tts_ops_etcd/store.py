"""`EtcdStore`: discovery records as etcd keys, each bound to a lease of its ttl.

Layout under the prefix: ``instances/SERVICE/ID`` holds ``{"record", "kind", "ts"}``
(``kind`` is the change that wrote it, so a watcher needs no diff); ``locks/deploy-NAME``
holds a deploy lock. Liveness is the lease: a heartbeat is a keep-alive, and a record
whose keep-alives stop is deleted by etcd after its ttl, with no cleanup job. Every write
is a transaction on the key's mod revision, retried on conflict, so two hosts never
overwrite each other's change. Ids are qualified with the node (``tts-a:web-1``) so the
same service on two hosts is two instances; an id without a node means this node's.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Any

from tts_ops.plugin import HEALTH, ConfigError, InstanceRecord, OperationFailed
from tts_ops_etcd.keys import b64, prefix_end, unb64
from tts_ops_etcd.options import EtcdOptions, from_url
from tts_ops_etcd.values import decode

UPDATABLE = ("weight", "health", "release")
_RETRIES = 20


def open_store(location: EtcdOptions | str) -> EtcdStore:
    """The registry factory: the validated ``discovery`` section, or an ``etcd://`` URL."""
    return EtcdStore(location if isinstance(location, EtcdOptions) else from_url(location))


class EtcdStore:
    expires_records = True  # a record without keep-alives is gone after its ttl

    def __init__(self, options: EtcdOptions) -> None:
        self.options = options
        self.node = options.node
        self._cluster: Any = None
        self.root = options.prefix.rstrip("/") + "/instances/"
        # the weight an operator or a deploy set, per instance, outside its lease: a record
        # that expired (an outage past its ttl) is registered again with it, not with the
        # initial weight its spec carries (a blue_green slot's 0)
        self.weights = options.prefix.rstrip("/") + "/weights/"
        self.marker = self.root + "~sync"
        self._beats = 0
        self._seen: dict[str, tuple[int, int, dict[str, Any]]] = {}  # key: lease, mod, value
        self._lists: dict[str, tuple[int, int, list[InstanceRecord]]] = {}

    @property
    def cluster(self) -> Any:
        """The client, made on first use: a store opened only for its node (``status``)
        imports no etcd client."""
        if self._cluster is None:
            from tts_ops_etcd.cluster import Cluster

            self._cluster = Cluster(self.options)
        return self._cluster

    # --- ids and keys ---

    def qualify(self, rid: str) -> str:
        return rid if ":" in rid else f"{rid}:{self.node}"

    def _key(self, rid: str) -> str:
        rid = self.qualify(rid)
        return f"{self.root}{rid.split(':')[0].split('@')[0]}/{rid}"

    # --- reading ---

    def _range(self, key: str, *, prefix: bool = False, serializable: bool = False
               ) -> tuple[int, list[dict[str, Any]]]:
        body: dict[str, Any] = {"key": b64(key)}
        if prefix:
            body["range_end"] = prefix_end(key)
        if serializable:
            # the member's own copy, no quorum round: a lookup may be a raft tick behind,
            # which discovery tolerates (every write is still a linearizable transaction)
            body["serializable"] = True
        answer = self.cluster.call("/kv/range", body)
        return int(answer["header"]["revision"]), answer.get("kvs", [])

    def _read(self, key: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(value, kv) of a live record, else None."""
        _rev, kvs = self._range(key)
        if not kvs:
            self._seen.pop(key, None)
            return None
        kv = kvs[0]
        value = decode(unb64(kv["key"]), unb64(kv["value"]))
        if value is None or value["kind"] == "deregistered":  # bad, or being deregistered
            return None
        self._seen[key] = (int(kv.get("lease", 0)), int(kv["mod_revision"]), value)
        return value, kv

    def _reads(self, key: str) -> Iterator[tuple[dict[str, Any], dict[str, Any], float] | None]:
        """A fresh read for each attempt of a compare-and-set: (value, kv, time), or None
        once the record is gone."""
        for _ in range(_RETRIES):
            found = self._read(key)
            yield None if found is None else (*found, time.time())

    @staticmethod
    def _record(value: dict[str, Any], now: float) -> InstanceRecord:
        record = InstanceRecord.from_row(value["record"])
        record.last_heartbeat = now  # the key exists: its lease was kept alive within ttl
        return record

    def get(self, rid: str) -> InstanceRecord | None:
        found = self._read(self._key(rid))
        return self._record(found[0], time.time()) if found else None

    def list(self, *, service: str | None = None, service_type: str | None = None
             ) -> list[InstanceRecord]:
        """Every live record, by id. The records decoded last time are used again when a
        check in one round trip (linearizable, two counts) shows no key under the range
        written since and none deleted: heartbeats are keep-alives, not writes, so a
        client that looks often (discovery, the monitor) decodes only what changed."""
        base = self.root + (f"{service}/" if service else "")
        now = time.time()
        cached = self._lists.get(base)
        if cached is not None and self._unchanged(base, *cached[:2]):
            records = cached[2]
        else:
            answer = self.cluster.call("/kv/range", {"key": b64(base),
                                                     "range_end": prefix_end(base)})
            kvs = answer.get("kvs", [])
            records = []
            for kv in kvs:
                if unb64(kv["key"]).endswith(b"/~sync"):
                    continue  # where history reads put their end marker
                value = decode(unb64(kv["key"]), unb64(kv["value"]))
                if value is None or value.get("kind") == "deregistered":
                    continue  # not a record (warned once), or a deregister finishing
                records.append(InstanceRecord.from_row(value["record"]))
            records.sort(key=lambda r: r.id)
            self._lists[base] = (int(answer["header"]["revision"]), len(kvs), records)
        out, new = [], object.__new__
        for record in records:
            if service_type is None or record.service_type == service_type:
                fresh = new(InstanceRecord)
                fresh.__dict__.update(record.__dict__, last_heartbeat=now)  # lease alive
                out.append(fresh)
        return out

    def _unchanged(self, base: str, revision: int, count: int) -> bool:
        key, end = b64(base), prefix_end(base)
        # etcd's count ignores the mod-revision filter; the keys it returns do not
        answer = self.cluster.call("/kv/txn", {"success": [
            {"request_range": {"key": key, "range_end": end, "keys_only": True,
                               "min_mod_revision": revision + 1}},
            {"request_range": {"key": key, "range_end": end, "count_only": True}}]})
        written, total = (r["response_range"] for r in answer["responses"])
        return not written.get("kvs") and int(total.get("count", 0)) == count

    # --- writing ---

    def _lease(self, ttl: float) -> int:
        answer = self.cluster.call("/lease/grant", {"TTL": max(1, math.ceil(ttl))})
        return int(answer["ID"])

    def _revoke(self, lease: int) -> int | None:
        """Revoke a lease (its keys go with it); the revision of that delete."""
        if not lease:
            return None
        answer = self.cluster.call("/lease/revoke", {"ID": lease})
        return int(answer.get("header", {}).get("revision", 0)) or None

    def _keepalive(self, lease: int) -> bool:
        if not lease:
            return False
        return self.cluster.keepalive(lease) > 0

    def _put(self, key: str, kv: dict[str, Any] | None, value: dict[str, Any],
             lease: int) -> int | None:
        """Write ``value`` if the key is still as read (``kv``); the revision, or None."""
        if kv is None:
            compare = {"key": b64(key), "target": "CREATE", "result": "EQUAL",
                       "create_revision": 0}
        else:
            compare = {"key": b64(key), "target": "MOD", "result": "EQUAL",
                       "mod_revision": int(kv["mod_revision"])}
        put: dict[str, Any] = {"key": b64(key), "value": b64(json.dumps(value))}
        if lease:
            put["lease"] = lease
        answer = self.cluster.call("/kv/txn", {"compare": [compare],
                                               "success": [{"request_put": put}]})
        if not answer.get("succeeded"):
            self._seen.pop(key, None)
            return None
        revision = int(answer["header"]["revision"])
        self._seen[key] = (lease, revision, value)
        return revision

    def _change(self, kind: str, record: InstanceRecord, seq: int, now: float
                ) -> dict[str, Any]:
        return {"seq": seq, "ts": now, "kind": kind, "id": record.id,
                "service": record.service, "record": record.to_json(now)}

    def _kept_weight(self, rid: str, release: str | None) -> int | None:
        """The weight last set for this incarnation of ``rid`` (same release), or None."""
        _rev, kvs = self._range(self.weights + self.qualify(rid))
        if not kvs:
            return None
        try:
            kept = json.loads(unb64(kvs[0]["value"]))
            weight = kept["weight"]
        except (ValueError, KeyError, TypeError):
            return None  # not ours to trust: the record's own weight stands
        if kept.get("release") != release or type(weight) is not int or \
                not 0 <= weight <= 1000:
            return None
        return weight

    def _keep_weight(self, rid: str, weight: int | None, release: str | None) -> None:
        key = b64(self.weights + self.qualify(rid))
        if weight is None:
            self.cluster.call("/kv/deleterange", {"key": key})
        else:
            self.cluster.call("/kv/put", {"key": key, "value": b64(json.dumps(
                {"weight": weight, "release": release}))})

    def register(self, record: InstanceRecord) -> dict[str, Any]:
        self._keep_weight(record.id, None, None)  # a new incarnation: its own weight
        return self._register(record)

    def _register(self, record: InstanceRecord) -> dict[str, Any]:
        now = time.time()
        rec = InstanceRecord(**{**asdict(record), "id": self.qualify(record.id),
                                "last_heartbeat": now})
        key = self._key(rec.id)
        lease = self._lease(rec.ttl)
        for _ in range(_RETRIES):
            _rev, kvs = self._range(key)
            kv = kvs[0] if kvs else None
            old = decode(unb64(kv["key"]), unb64(kv["value"])) if kv else None
            kind = "updated" if old and old["kind"] != "deregistered" else "registered"
            seq = self._put(key, kv, {"record": asdict(rec), "kind": kind, "ts": now}, lease)
            if seq is not None:
                if kv is not None and int(kv.get("lease", 0)) not in (0, lease):
                    self._revoke(int(kv["lease"]))  # no key is left on it
                return self._change(kind, rec, seq, now)
        raise self._busy(rec.id)

    def deregister(self, rid: str) -> dict[str, Any] | None:
        key = self._key(rid)
        for found in self._reads(key):
            if found is None:
                return None
            value, kv, now = found
            lease = int(kv.get("lease", 0))
            seq = self._put(key, kv, {**value, "kind": "deregistered", "ts": now}, lease)
            if seq is None:
                continue
            self._seen.pop(key, None)
            self._keep_weight(rid, None, None)
            deleted = self._revoke(lease)
            if deleted is None:  # a record without a lease
                deleted = int(self.cluster.call("/kv/deleterange",
                                                {"key": b64(key)})["header"]["revision"])
            return self._change("deregistered", self._record(value, now), deleted, now)
        raise self._busy(rid)

    def heartbeat(self, rid: str, *, health: str | None = None,
                  record: InstanceRecord | None = None, now: float | None = None
                  ) -> tuple[bool, dict[str, Any] | None]:
        if health is not None and health not in HEALTH:
            raise ConfigError(f"health: must be one of {', '.join(HEALTH)} (got {health!r})")
        now = time.time() if now is None else now
        key = self._key(rid)
        for _ in range(_RETRIES):
            seen = self._seen.get(key)
            if seen is None or not self._keepalive(seen[0]):
                found = self._read(key)
                if found is None:
                    if record is None:
                        return False, None
                    # gone (its lease ran out): back with the weight last set for it
                    kept = self._kept_weight(record.id, record.release)
                    rec = InstanceRecord(**{**asdict(record), "health": health or record.health,
                                            **({"weight": kept} if kept is not None else {})})
                    return False, self._register(rec)
                seen = self._seen[key]
                if not self._keepalive(seen[0]):
                    self._seen.pop(key, None)
                    continue  # the lease ran out between the read and the keep-alive
            self._beats += 1
            lease, mod, value = seen
            if health is None or health == value["record"]["health"]:
                return True, None
            new = {**value, "kind": "health", "ts": now,
                   "record": {**value["record"], "health": health}}
            seq = self._put(key, {"mod_revision": mod}, new, lease)
            if seq is not None:
                return True, self._change("health", self._record(new, now), seq, now)
        raise self._busy(rid)

    def update(self, rid: str, **fields: Any) -> dict[str, Any] | None:
        wrong = sorted(set(fields) - set(UPDATABLE))
        if wrong:
            raise ConfigError(f"{wrong[0]}: cannot be updated")
        key = self._key(rid)
        for found in self._reads(key):
            if found is None:
                return None
            value, kv, now = found
            rec = self._record(value, now)
            for name, new in fields.items():
                setattr(rec, name, new)
            InstanceRecord.__post_init__(rec)  # the same checks as a new record
            kind = "weight" if "weight" in fields else "health"
            seq = self._put(key, kv, {"record": asdict(rec), "kind": kind, "ts": now},
                            int(kv.get("lease", 0)))
            if seq is not None:
                if "weight" in fields:
                    self._keep_weight(rid, rec.weight, rec.release)
                return self._change(kind, rec, seq, now)
        raise self._busy(rid)

    def cleanup(self, deregister_after: float, now: float | None = None
                ) -> list[dict[str, Any]]:
        """Nothing to remove: etcd deletes a record when its lease runs out. A deregister
        that died half-way (marked, not yet deleted) is finished here."""
        _rev, kvs = self._range(self.root, prefix=True)
        for kv in kvs:
            if unb64(kv["key"]).endswith(b"/~sync"):
                continue
            value = decode(unb64(kv["key"]), unb64(kv["value"]))
            if value is not None and value.get("kind") == "deregistered":
                self._revoke(int(kv.get("lease", 0)))
        return []

    def _busy(self, rid: str) -> OperationFailed:
        return OperationFailed(f"etcd: {rid} changed {_RETRIES} times while this change was"
                               " being made; try again")

    # --- changes ---

    def beats(self) -> int:
        return self._beats

    def last_seq(self, service: str | None = None) -> int:
        return self.cluster.revision()

    def changes(self, since: int, service: str | None = None) -> list[dict[str, Any]]:
        from tts_ops_etcd.feed import history

        return history(self, since, service)

    def follow(self, since: int, service: str | None, stop: Callable[[], bool]
               ) -> Iterator[dict[str, Any]]:
        from tts_ops_etcd.feed import follow

        return follow(self, since, service, stop)

    def deploy_lock(self, service: str, holder: dict[str, Any]) -> Any:
        from tts_ops_etcd.lock import EtcdLock

        return EtcdLock(self, service, holder)

    def close(self) -> None:
        if self._cluster is not None:
            self._cluster.close()
