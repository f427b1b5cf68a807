"""Heartbeats for a service whose process manager sends none (systemd, supervisord).

The manual backend's supervisor heartbeats its service itself. Under systemd or
supervisord nothing did, so a service's record went stale after ``ttl`` (and on a leased
registry such as etcd it was deleted) unless a ``discovery monitor`` ran. Those backends
run this keeper beside each service, under the same process manager, bound to it:

    python -m tts_ops.discovery.keeper SPEC.json

Every ``interval`` (ttl/3) it checks the service's health (http, tcp or none, as
configured) and heartbeats its record through the configured registry: passing
re-registers a record that was removed; ``unhealthy_threshold`` failed checks in a row
mark it critical once (never bringing a removed record back), and no heartbeat follows
until a check passes again, so a service that stays down goes stale after ``ttl``.
SIGTERM or SIGINT ends it at once (exit 0). A registry it cannot reach is one line on
stderr, said again only when the reason changes; the next heartbeat tries again.
"""

from __future__ import annotations

import signal
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

KEEPER_DIR = "keepers"


def keeper_spec(service: Any, discovery: dict[str, Any] | None, backend: str,
                alive: list[str] | None = None) -> dict[str, Any] | None:
    """What a keeper needs for ``service``: None when discovery is off for it (no
    ``discovery`` options given to the backend, or the process is a router's own).

    ``alive``: a read-only command of the backend's that exits 0 while the service's
    process runs and 1 when it does not (anything else: it could not tell), asked before
    each health check: an address that outlives the process
    (a socket holder) passes a ``tcp`` check while nothing serves it."""
    from tts_ops.routing import is_router_process

    if not discovery or is_router_process(service):
        return None
    from tts_ops.discovery.autoregister import record_for

    record = record_for(service, SimpleNamespace(**discovery), backend=backend,
                        advertise=discovery.get("advertise"), owner=discovery.get("owner"))
    hc = service.health_check
    host = record.host
    return {
        "registry": {"name": discovery["registry"], "location": discovery["location"],
                     "record": asdict(record), "interval": max(1.0, discovery["ttl"] / 3),
                     "weights": discovery.get("weights")},
        "health": {"type": hc.type, "host": host, "port": service.port,
                   "url": record.meta.get("health_url"), "timeout": hc.timeout},
        "unhealthy_threshold": max(1, service.unhealthy_threshold),
        **({"alive": list(alive)} if alive else {}),
    }


def write_spec(state_dir: Path, name: str, spec: dict[str, Any]) -> Path:
    """The spec as a private file of the state dir (0600, written atomically; left as it
    is when it already says the same)."""
    import json
    import os

    from tts_ops.statefile import atomic_write_bytes, open_nofollow, private_dir

    path = private_dir(Path(state_dir) / KEEPER_DIR) / f"{name}.json"
    data = (json.dumps(spec, indent=1, sort_keys=True) + "\n").encode()
    try:
        with os.fdopen(open_nofollow(path, os.O_RDONLY), "rb") as fh:
            if fh.read() == data:
                return path
    except OSError:
        pass  # missing, or not ours: replaced atomically below
    atomic_write_bytes(path, data)
    return path


def prepare(state_dir: Path, service: Any, discovery: dict[str, Any] | None, backend: str,
            alive: list[str] | None = None) -> Path | None:
    """The spec file of ``service``'s keeper, written when it changed; None (and no spec
    left behind) when the service needs none. What a backend calls at every install
    (``alive``: see `keeper_spec`)."""
    spec = keeper_spec(service, discovery, backend, alive)
    if spec is None:
        remove_spec(state_dir, service.name)
        return None
    return write_spec(state_dir, service.name, spec)


def remove_spec(state_dir: Path, name: str) -> None:
    try:
        (Path(state_dir) / KEEPER_DIR / f"{name}.json").unlink()
    except FileNotFoundError:
        pass


def keeper_argv(spec_path: Path, python: str | None = None) -> list[str]:
    return [python or sys.executable, "-m", "tts_ops.discovery.keeper", str(spec_path)]


def spec_problem(spec: Any) -> str | None:
    """What is wrong with a spec, or None: its numbers decide how often the keeper wakes
    (an interval of 1e-9 spun a core), so each is held to its range."""
    import math

    def number(value: Any, low: float, high: float) -> bool:
        return (isinstance(value, int | float) and not isinstance(value, bool)
                and math.isfinite(value) and low <= value <= high)

    if not isinstance(spec, dict):
        return "not a JSON object"
    registry, health = spec.get("registry"), spec.get("health")
    if not isinstance(registry, dict) or not isinstance(health, dict):
        return "registry and health must be objects"
    if not number(registry.get("interval"), 0.1, 3600):
        return "registry.interval must be 0.1-3600 seconds"
    if not isinstance(registry.get("record"), dict):
        return "registry.record must be an object"
    if health.get("type") not in ("http", "tcp", "none"):
        return "health.type must be http, tcp or none"
    if not number(health.get("timeout"), 0.001, 300):
        return "health.timeout must be 0.001-300 seconds"
    if health["type"] != "none" and not (isinstance(health.get("port"), int)
                                         and 0 < health["port"] < 65536):
        return "health.port must be 1-65535"
    alive = spec.get("alive")
    if alive is not None and not (isinstance(alive, list) and alive and len(alive) < 64
                                  and all(isinstance(a, str) for a in alive)):
        return "alive must be an argv list"
    threshold = spec.get("unhealthy_threshold", 1)
    if not (isinstance(threshold, int) and 1 <= threshold <= 10_000):
        return "unhealthy_threshold must be 1-10000"
    return None


def check(health: dict[str, Any]) -> tuple[bool, str]:
    from tts_ops.health import check_http, check_tcp

    if health["type"] == "none":
        return True, "no health check"
    if health["type"] == "tcp" or not health.get("url"):
        result = check_tcp(health["host"], health["port"], health["timeout"])
    else:
        result = check_http(health["url"], health["timeout"])
    return result.ok, result.detail


class Keeper:
    def __init__(self, spec: dict[str, Any]) -> None:
        from tts_ops.discovery.record import InstanceRecord

        self.registry = spec["registry"]
        self.health = spec["health"]
        self.threshold = int(spec.get("unhealthy_threshold", 1))
        self.alive: list[str] | None = spec.get("alive")
        self.record = InstanceRecord(**self.registry["record"])
        self.failures = 0
        self.store: Any = None
        self.said = ""
        self.done = threading.Event()

    def running(self) -> tuple[bool, str]:
        """Whether the backend says the process runs (no ``alive`` command: assumed)."""
        if not self.alive:
            return True, ""
        import subprocess

        try:
            done = subprocess.run(self.alive, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, timeout=float(self.health["timeout"]) + 10)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"its backend could not be asked ({exc})"
        if done.returncode == 1:
            return False, f"its process is not running ({done.stderr.strip()[:200]})"
        # 0: it runs; anything else: the manager could not say, and the health check decides
        return True, ""

    def once(self) -> None:
        ok, detail = self.running()
        if ok:
            ok, detail = check(self.health)
        self.failures = 0 if ok else self.failures + 1
        if not ok and self.failures != self.threshold:
            # not yet unhealthy, or already said: no refresh, so a service that stays down
            # goes stale after its ttl (and leaves a leased registry), as under the manual
            # backend
            return
        health = "passing" if ok else "critical"
        try:
            if self.store is None:
                from tts_ops.discovery.registry import open_named

                self.store = open_named(self.registry["name"], self.registry["location"])
            from tts_ops.discovery.beat import with_kept_weight

            record = with_kept_weight(self.record, self.registry.get("weights")) if ok \
                else None
            self.store.heartbeat(self.record.id, health=health, record=record)
        except Exception as exc:  # any registry failure: say it once, try next time
            self.close()
            self.say(f"heartbeat of {self.record.id} missed: {exc}")
            return
        if self.said:
            self.say("")
            print(f"tts-ops keeper: heartbeats of {self.record.id} resumed", file=sys.stderr,
                  flush=True)
        if not ok:
            print(f"tts-ops keeper: {self.record.id} critical: {detail}", file=sys.stderr,
                  flush=True)

    def say(self, line: str) -> None:
        if line and line != self.said:
            print(f"tts-ops keeper: {line}", file=sys.stderr, flush=True)
        self.said = line

    def close(self) -> None:
        store, self.store = self.store, None
        if store is not None:
            try:
                store.close()
            except Exception:  # a broken client: nothing left to save
                pass

    def run(self) -> None:
        interval = float(self.registry["interval"])
        try:
            while not self.done.is_set():
                self.once()
                self.done.wait(interval)
        finally:
            self.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tts_ops.discovery.keeper SPEC.json", file=sys.stderr)
        return 2
    import json
    import os

    from tts_ops.statefile import open_nofollow

    try:
        with os.fdopen(open_nofollow(args[0], os.O_RDONLY), "rb") as fh:
            spec = json.loads(fh.read())
        problem = spec_problem(spec)
        if problem is not None:
            raise ValueError(problem)
        keeper = Keeper(spec)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"tts-ops keeper: {args[0]}: unusable spec ({exc}); `tts-ops start` writes it"
              " again", file=sys.stderr)
        return 2

    def stop(signum: int, frame: Any) -> None:
        keeper.done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    keeper.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
