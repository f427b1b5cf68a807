"""The journal of intent of a deploy, and what the next command does with a dead one.

A deploy writes ``<state>/deploy/NAME.journal.json`` before its strategy starts a process
and removes it when the deploy has ended, whichever way. SIGINT, SIGTERM, SIGHUP and a
closed stdout are handled in the deploy itself (it rolls back); a deploy killed where it
cannot clean up (SIGKILL, a crash, a power cut) leaves its journal behind. The next tts-ops
command that looks at services finds it, sees that its owner is dead (the service's deploy
lock is free again: the kernel releases an ``flock`` with its process), and finishes it:

* if the deploy had recorded its new generation as serving, it is completed (the old
  generation is stopped if it still runs);
* otherwise it is reversed: the old generation is started again where it was stopped, gets
  all the traffic back, and the new generation is stopped.

Either way the outcome goes into ``deploy history`` and the release is marked.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tts_ops.statefile import atomic_write_json, private_dir, read_json

if TYPE_CHECKING:
    from tts_ops.runtime.core import Runtime

SUFFIX = ".journal.json"


def journal_path(state_dir: Path, name: str) -> Path:
    return state_dir / "deploy" / f"{name}{SUFFIX}"


def write(state_dir: Path, name: str, entry: dict[str, Any]) -> None:
    private_dir(journal_path(state_dir, name).parent)
    atomic_write_json(journal_path(state_dir, name), {**entry, "pid": os.getpid(),
                                                      "written_at": time.time()})


def clear(state_dir: Path, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(journal_path(state_dir, name))


def read(state_dir: Path, name: str) -> dict[str, Any] | None:
    """The journal of ``name``: a regular file of ours (`read_json` refuses anything else)
    whose fields have the shapes a deploy writes, or None."""
    try:
        data = read_json(journal_path(state_dir, name))
    except ValueError:
        return None
    return data if entry_problem(data) is None else None


_GENERATIONS = ("plain", "blue", "green")
_FIELDS: dict[str, tuple[type, ...]] = {
    "deploy_id": (str,), "service": (str,), "strategy": (str,), "environment": (str,),
    "backend": (str,), "started_at": (int, float), "old_generation": (str, type(None)),
    "old_release": (str, type(None)), "old_ports": (list, type(None)),
    "new_generation": (str,), "release": (str, type(None)),
    "new_ports": (list, type(None)), "old_host": (str, type(None)),
    "new_host": (str, type(None)), "pid": (int,), "written_at": (int, float)}


def entry_problem(data: Any) -> str | None:
    """What is wrong with a journal's content, or None: a journal names the processes the
    next command starts or stops, so only the shapes a deploy writes are accepted."""
    from tts_ops.deploy.releases import valid_release_id

    if not isinstance(data, dict):
        return "not an object"
    for key, value in data.items():
        kinds = _FIELDS.get(key)
        if kinds is None:
            return f"unknown field {key[:40]!r}"
        if not isinstance(value, kinds) or isinstance(value, bool):
            return f"{key}: wrong type"
    missing = [k for k in ("backend", "new_generation", "release", "pid") if k not in data]
    if missing:
        return f"{missing[0]}: missing"
    for key in ("old_generation", "new_generation"):
        if data.get(key) not in (None, *_GENERATIONS):
            return f"{key}: not a generation"
    for key in ("old_release", "release"):
        if data.get(key) is not None and not valid_release_id(data[key]):
            return f"{key}: not a release id"
    for key in ("old_ports", "new_ports"):
        ports = data.get(key) or []
        if len(ports) > 256 or not all(type(p) is int and 0 < p < 65536 for p in ports):
            return f"{key}: not a list of ports"
    from tts_ops.deploy.slots import valid_host

    for key in ("old_host", "new_host"):
        if not valid_host(data.get(key)):
            return f"{key}: not an IP address"
    if data["pid"] <= 0:
        return "pid: not a pid"
    return None


def interrupted(state_dir: Path) -> list[str]:
    """One line per deploy whose process died, for commands that change nothing."""
    import fcntl

    from tts_ops.deploy.lock import DeployLock
    from tts_ops.statefile import open_nofollow

    lines = []
    for name in pending(state_dir):
        entry = read(state_dir, name)
        if entry is None:
            continue
        try:
            fd = open_nofollow(DeployLock(state_dir, name).path, os.O_RDONLY)
        except FileNotFoundError:
            fd = None
        try:
            if fd is not None:  # a live deploy holds it: a shared lock is refused then
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            continue
        finally:
            if fd is not None:
                os.close(fd)
        lines.append(f"{name}: deploy {entry.get('deploy_id')} was interrupted (pid"
                     f" {entry['pid']} died); run 'tts-ops recover' or any deploy/start/stop"
                     " of it to finish it")
    return lines


def pending(state_dir: Path) -> list[str]:
    """Names of services with a journal (a deploy under way, or one that died)."""
    try:
        entries = os.listdir(state_dir / "deploy")
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(e[: -len(SUFFIX)] for e in entries if e.endswith(SUFFIX))


def generation_services(state_dir: Path, name: str, generation: str | None,
                        release_id: str | None, ports: list[int] | None = None,
                        base: Any = None, host: str | None = None) -> list[Any]:
    """The slot services of ``generation`` running ``release_id`` (from its snapshot), or
    with no release (a restart of a service never deployed) ``base``, the configured one."""
    if generation is None:
        return []
    from tts_ops.config.service import ServiceView
    from tts_ops.deploy import slots
    from tts_ops.deploy.releases import ReleaseStore

    if release_id is None:
        return slots.slot_services(base, generation, None, None, 100, ports, host) \
            if base else []
    release = ReleaseStore(state_dir, name).get(release_id)
    if release is None:
        return []
    return slots.slot_services(ServiceView(release.config), generation, release.id,
                               release.source, 100, ports, host)


def in_flight(state_dir: Path, name: str, base: Any = None) -> list[Any]:
    """The new generation's services of a deploy under way (for status and stop)."""
    entry = read(state_dir, name)
    if entry is None:
        return []
    return generation_services(state_dir, name, entry.get("new_generation"),
                               entry.get("release"), entry.get("new_ports"), base,
                               entry.get("new_host"))


def recover(app: Runtime, names: list[str] | None = None) -> list[str]:
    """Finish every deploy whose process died (of ``names``, or all); one line each."""
    lines = []
    for name in pending(app.state_dir):
        if names is not None and name not in names:
            continue
        line = _recover_one(app, name)
        if line:
            lines.append(line)
    return lines


def _route_only(app: Runtime, service: Any, survivors: list[Any]) -> None:
    """Behind a router: route only to the generation that stays, before the other stops."""
    if service is None or not service.router:
        return
    from tts_ops.errors import TtsOpsError
    from tts_ops.routing import server_of

    try:
        app.router(service).sync(service, [server_of(s, 100) for s in survivors])
    except TtsOpsError:
        pass  # the router is down too: the next start or deploy routes it afresh


def _recover_one(app: Runtime, name: str) -> str | None:
    from tts_ops.deploy import history, slots
    from tts_ops.deploy.lock import DeployLock
    from tts_ops.deploy.releases import ReleaseStore
    from tts_ops.errors import OperationFailed

    state_dir = app.state_dir
    try:
        lock = DeployLock(state_dir, name).__enter__()
    except OperationFailed:
        return None  # its owner is alive: a deploy under way
    try:
        entry = read(state_dir, name)
        if entry is None:
            path = journal_path(state_dir, name)
            if not os.path.lexists(path):
                return None
            try:
                problem = entry_problem(read_json(path))
            except ValueError:
                problem = "not JSON"
            return (f"{name}: {path} is not a deploy journal ({problem}); nothing was"
                    " started or stopped from it: remove it")
        backend = app.backend(entry["backend"])
        old_gen, new_gen = entry.get("old_generation"), entry["new_generation"]
        configured = app.config.get(name)
        old = generation_services(state_dir, name, old_gen, entry.get("old_release"),
                                  entry.get("old_ports"), configured, entry.get("old_host"))
        if old_gen == "plain" and not old:
            old = [s for s in [configured] if s is not None]
        new = generation_services(state_dir, name, new_gen, entry["release"],
                                  entry.get("new_ports"), configured, entry.get("new_host"))
        store = ReleaseStore(state_dir, name)
        release = store.get(entry["release"]) if entry["release"] else None
        active = slots.active_generation(state_dir, name)
        finished = active["release"] == entry["release"] and active["generation"] == new_gen
        if finished:
            result, reason = "deployed", "completed after its process died"
            if old_gen != new_gen:
                _route_only(app, configured, new)
                for svc in old:
                    backend.stop(svc)
        else:
            result, reason = "rolled_back", "interrupted: its process died"
            if old_gen == new_gen:  # same slot: the new release runs where the old one did
                for svc in new:
                    backend.stop(svc)
            for svc in old:
                backend.start(svc)
            _route_only(app, configured, old)
            if old_gen != new_gen:
                _weights(app, name, [(s, 100) for s in old] + [(s, 0) for s in new])
                for svc in new:
                    backend.stop(svc)
            if release is not None:
                store.save(release, state="rolled_back", reason=reason)
        history.append(state_dir, {
            "id": entry.get("deploy_id"), "service": name, "strategy": entry.get("strategy"),
            "environment": entry.get("environment"), "backend": entry["backend"],
            "started_at": entry.get("started_at"), "release": entry["release"],
            "result": result, "reason": f"{reason} (pid {entry.get('pid')}); recovered",
            "phases": []})
        clear(state_dir, name)
        return (f"{name}: deploy {entry.get('deploy_id')} was interrupted (its process"
                f" {entry.get('pid')} died): {'completed' if finished else 'rolled back'};"
                " see 'tts-ops deploy history'")
    finally:
        lock.__exit__(None, None, None)


def _weights(app: Runtime, name: str, weights: list[tuple[Any, int]]) -> None:
    from tts_ops.deploy.slots import SLOT_LABEL

    try:
        registry = app.registry()
    except Exception:  # discovery off or unreachable: nothing routes by weight then
        return
    for svc, weight in weights:
        slot = svc.labels.get(SLOT_LABEL)
        with contextlib.suppress(Exception):  # a record not registered (yet): nothing to move
            registry.set_weight(f"{name}@{slot}" if slot else svc.name, weight)
