"""What the registry holds is untrusted input: every value read from etcd is decoded here.

Any client of the cluster can write a key under the prefix (``etcdctl put``), so a value
is bounded in size and must be a JSON object with a ``kind`` and a ``record`` the core's
own model accepts (`InstanceRecord.from_input`: known fields, their types, the same
checks as a record registered here). Anything else is skipped, with one warning per key
per process, and counted: one bad key must not break every host's list, resolve, watch
and client.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from tts_ops.plugin import ConfigError, InstanceRecord

MAX_VALUE = 64 * 1024  # a record is a few hundred bytes: labels and meta are small
KINDS = ("registered", "updated", "health", "weight", "deregistered")  # what wrote it

_warned: set[bytes] = set()
skipped: dict[bytes, str] = {}  # key -> why, this process


class BadValue(ValueError):
    pass


def decode(key: bytes, raw: bytes) -> dict[str, Any] | None:
    """The value under ``key`` with its ``record`` checked, or None (warned, counted)."""
    try:
        return check(raw)
    except BadValue as exc:
        skip(key, str(exc))
        return None


def check(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_VALUE:
        raise BadValue(f"{len(raw)} bytes, over the {MAX_VALUE} a record may hold")
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadValue("not JSON") from None
    if not isinstance(value, dict):
        raise BadValue("not a JSON object")
    if not isinstance(value.get("kind"), str) or value["kind"] not in KINDS:
        raise BadValue("no valid kind")
    ts = value.get("ts")
    if not isinstance(ts, int | float) or isinstance(ts, bool):
        raise BadValue("no valid ts")
    row = value.get("record")
    if not isinstance(row, dict):
        raise BadValue("no record")
    if "effective_health" in row:
        raise BadValue("a record with a computed field (effective_health)")
    try:
        record = InstanceRecord.from_input(dict(row))
    except (ConfigError, TypeError, ValueError) as exc:
        raise BadValue(f"not a valid record ({exc})") from None
    if record.id != row.get("id"):
        raise BadValue("its id is not valid")
    return value


def skip(key: bytes, why: str) -> None:
    skipped[key] = why
    if key not in _warned:
        _warned.add(key)
        name = key.decode(errors="replace")[:200]
        print(f"tts-ops: warning: etcd: skipped {name!r}: {why}; remove it with etcdctl del",
              file=sys.stderr)
