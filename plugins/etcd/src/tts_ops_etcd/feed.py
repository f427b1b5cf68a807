"""Registry changes from etcd's watch: the history since a revision, and a live feed that
resumes from the last revision it delivered after a disconnect (no change lost, none
twice).

A change's ``seq`` is the etcd revision that made it. Kinds come from the value a writer
put (``registered``, ``updated``, ``weight``, ``health``); a delete is ``deregistered``
when the record was marked so first, else ``stale_removed`` (its lease ran out).
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from tts_ops.plugin import InstanceRecord, OperationFailed
from tts_ops_etcd.keys import b64, prefix_end, unb64
from tts_ops_etcd.values import decode

if TYPE_CHECKING:
    from tts_ops_etcd.store import EtcdStore


def _watch_body(store: EtcdStore, start: int) -> dict[str, Any]:
    return {"create_request": {"key": b64(store.root), "range_end": prefix_end(store.root),
                               "start_revision": max(1, start), "prev_kv": True}}


def _results(resp: Any) -> Iterator[dict[str, Any]]:
    for line in resp.iter_lines():
        if not line:
            continue
        message = json.loads(line)
        if "error" in message:
            raise OperationFailed(f"etcd watch: {message['error'].get('message', message)}")
        result = message.get("result", {})
        if result.get("canceled") or int(result.get("compact_revision", 0) or 0):
            raise OperationFailed(
                f"etcd: the history before revision {result.get('compact_revision')} was"
                " compacted; follow from now (without --from-start)")
        yield result


def _abort(resp: Any) -> None:
    """Close a watch stream another thread may be reading: shut its socket down first (the
    reader wakes up with end-of-stream), or close() would wait for the reader's lock."""
    import socket

    try:
        with socket.socket(fileno=os.dup(resp.raw._fp.fileno())) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except (AttributeError, ValueError, OSError):
        pass  # already closed
    resp.close()


def to_change(event: dict[str, Any], service: str | None) -> dict[str, Any] | None:
    kv = event["kv"]
    key = unb64(kv["key"]).decode()
    if key.endswith("/~sync"):
        return None
    seq = int(kv["mod_revision"])
    if event.get("type") == "DELETE":
        prev = (decode(unb64(kv["key"]), unb64(event["prev_kv"]["value"]))
                if "prev_kv" in event else None)
        if prev is None:
            return None
        kind = "deregistered" if prev["kind"] == "deregistered" else "stale_removed"
        value, ts = prev, time.time()
    else:
        value = decode(unb64(kv["key"]), unb64(kv["value"]))
        if value is None or value["kind"] == "deregistered":
            return None  # not a record (warned once), or the delete that follows is it
        kind, ts = value["kind"], value["ts"]
    record = InstanceRecord.from_row(value["record"])
    if service is not None and record.service != service:
        return None
    return {"seq": seq, "ts": ts, "kind": kind, "id": record.id, "service": record.service,
            "record": record.to_json(ts)}


def history(store: EtcdStore, since: int, service: str | None) -> list[dict[str, Any]]:
    """Every change after ``since``: a watch from ``since + 1``, read up to a marker this
    call writes (the watch has no end of its own)."""
    now = store.cluster.revision()
    if since >= now:
        return []
    token = uuid.uuid4().hex
    _client, resp = store.cluster.call("/watch", _watch_body(store, since + 1), stream=True)
    out: list[dict[str, Any]] = []
    try:
        results = _results(resp)
        next(results)  # created
        store.cluster.call("/kv/put", {"key": b64(store.marker),
                                       "value": b64(json.dumps({"sync": token}))})
        for result in results:
            for event in result.get("events", []):
                kv = event["kv"]
                if unb64(kv["key"]).decode() == store.marker:
                    if json.loads(unb64(kv["value"])).get("sync") == token:
                        return out
                    continue
                change = to_change(event, service)
                if change is not None:
                    out.append(change)
    finally:
        resp.close()
    raise OperationFailed("etcd: the watch ended before its marker came back; try again")


def follow(store: EtcdStore, since: int, service: str | None, stop: Callable[[], bool]
           ) -> Iterator[dict[str, Any]]:
    """Changes after ``since`` as they happen, until ``stop()``; a lost connection is
    opened again (any endpoint) from the revision after the last change delivered."""
    items: queue.Queue[tuple[str, Any]] = queue.Queue()
    next_rev = since + 1
    current: list[Any] = []

    def read(resp: Any) -> None:
        try:
            for result in _results(resp):
                for event in result.get("events", []):
                    items.put(("event", event))
            items.put(("lost", None))
        except OperationFailed as exc:
            items.put(("fatal", exc))
        except Exception as exc:  # a dropped connection: reconnect
            items.put(("lost", exc))

    def connect() -> bool:
        try:
            _client, resp = store.cluster.call("/watch", _watch_body(store, next_rev),
                                               stream=True)
        except OperationFailed:
            return False
        current[:] = [resp]
        threading.Thread(target=read, args=(resp,), daemon=True).start()
        return True

    connected = connect()
    retry_at = time.monotonic() + 1.0
    try:
        while not stop():
            if not connected:
                if time.monotonic() >= retry_at:
                    connected = connect()
                    retry_at = time.monotonic() + 1.0
                else:
                    time.sleep(0.1)
                continue
            try:
                what, item = items.get(timeout=0.2)
            except queue.Empty:
                continue
            if what == "fatal":
                raise item
            if what == "lost":
                for resp in current:
                    _abort(resp)
                connected = False
                continue
            if int(item["kv"]["mod_revision"]) < next_rev:
                continue  # already delivered before a reconnect
            next_rev = int(item["kv"]["mod_revision"]) + 1
            change = to_change(item, service)
            if change is not None:
                yield change
    finally:
        for resp in current:
            _abort(resp)
