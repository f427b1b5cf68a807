"""`ServiceHealthMonitor`: check every registered instance, in parallel, with hysteresis.

A passing check is also a heartbeat, so services under any backend stay fresh while the
monitor runs. ``liveness`` cross-checks with the process backend: an instance whose
process is gone is never ``passing``, whatever its port says.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tts_ops.discovery.record import InstanceRecord
from tts_ops.discovery.registry import ServiceRegistry
from tts_ops.health import check_http


@dataclass
class _Track:
    ok: int = 0
    failed: int = 0


@dataclass
class CheckOutcome:
    id: str
    ok: bool
    detail: str
    old: str
    new: str


@dataclass
class ServiceHealthMonitor:
    registry: ServiceRegistry
    interval: float = 10.0
    timeout: float = 2.0
    healthy_threshold: int = 2
    unhealthy_threshold: int = 3
    #: maps records to True (process alive), False (gone) or None (unknown)
    liveness: Callable[[list[InstanceRecord]], dict[str, bool | None]] | None = None
    on_change: Callable[[CheckOutcome], None] | None = None
    workers: int = 16
    _tracks: dict[str, _Track] = field(default_factory=dict)

    def _check(self, record: InstanceRecord) -> tuple[bool, str]:
        url = record.meta.get("health_url") or record.url + "/health"
        result = check_http(url, self.timeout)
        return result.ok, result.detail

    def run_once(self) -> list[CheckOutcome]:
        records = self.registry.find_services()
        alive = self.liveness(records) if self.liveness and records else {}
        with ThreadPoolExecutor(max_workers=max(1, min(self.workers, len(records) or 1))) as pool:
            results = list(pool.map(self._check, records))
        outcomes = []
        now = time.time()
        for record, (ok, detail) in zip(records, results, strict=True):
            if alive.get(record.id) is False:
                ok, detail = False, "its process is not running"
            track = self._tracks.setdefault(record.id, _Track())
            if ok:
                track.ok, track.failed = track.ok + 1, 0
            else:
                track.ok, track.failed = 0, track.failed + 1
            old = record.effective_health(now)
            new = self._next(old, track, ok, alive.get(record.id) is False)
            if ok:
                self.registry.heartbeat(record.id, health=new, record=record)
            elif new != record.health:
                self.registry.set_health(record.id, new)
            outcome = CheckOutcome(record.id, ok, detail, old, new)
            outcomes.append(outcome)
            if new != old and self.on_change is not None:
                self.on_change(outcome)
        for gone in set(self._tracks) - {r.id for r in records}:
            del self._tracks[gone]
        return outcomes

    def _next(self, old: str, track: _Track, ok: bool, dead: bool) -> str:
        if dead:
            return "critical"
        if ok:
            if old == "passing" or track.ok >= self.healthy_threshold:
                return "passing"
            return "warning"
        if track.failed >= self.unhealthy_threshold:
            return "critical"
        return "warning" if old == "passing" else old

    def run_forever(self, stop: Callable[[], bool] | None = None,
                    tick: Callable[[list[CheckOutcome]], None] | None = None) -> None:
        while stop is None or not stop():
            started = time.monotonic()
            outcomes = self.run_once()
            self.registry.cleanup_stale_services()
            if tick is not None:
                tick(outcomes)
            left = self.interval - (time.monotonic() - started)
            deadline = time.monotonic() + max(0.0, left)
            while time.monotonic() < deadline and (stop is None or not stop()):
                time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
