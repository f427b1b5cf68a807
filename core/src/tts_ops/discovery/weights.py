"""The weights this host's operator or deploys set, kept in the host's state dir.

A shared registry's record lives on a lease: after an outage or a partition longer than
its ttl it is gone, and the heartbeat that registers it again knows only the weight its
spec started with (0 for a blue_green slot). The registry plugin may keep weights too
(etcd does, outside the lease); this file is the host's own copy, which outlives the
registry's data as well: ``{record id: {"weight", "release"}}``, 0600, written atomically
under a lock. A weight is reused only for the same release of the instance: a new
incarnation starts from its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

NAME = "discovery-weights.json"


def path_in(state_dir: Path) -> Path:
    return Path(state_dir) / NAME


def _read(path: Path) -> dict[str, Any]:
    from tts_ops.statefile import read_json

    try:
        data = read_json(path)
    except ValueError:  # not ours, or not JSON: no weight is taken from it
        return {}
    return data if isinstance(data, dict) else {}


def _change(path: Path, rid: str, entry: dict[str, Any] | None) -> None:
    from tts_ops.statefile import atomic_write_json, locked

    with locked(path.with_name(f".{path.name}.lock")):
        data = _read(path)
        if entry is None:
            if rid not in data:
                return
            data.pop(rid)
        else:
            data[rid] = entry
        atomic_write_json(path, data)


def save(path: Path, rid: str, weight: int, release: str | None) -> None:
    _change(path, rid, {"weight": weight, "release": release})


def forget(path: Path, rid: str) -> None:
    _change(path, rid, None)


def kept(path: str | Path | None, rid: str, release: str | None) -> int | None:
    """The weight kept for this incarnation of ``rid``, or None."""
    if not path:
        return None
    entry = _read(Path(path)).get(rid.split(":")[0])
    if not isinstance(entry, dict) or entry.get("release") != release:
        return None
    weight = entry.get("weight")
    return weight if type(weight) is int and 0 <= weight <= 1000 else None
