"""``tts-ops logs monitor``: follow logs, raise alerts when thresholds are crossed.

Thresholds over a sliding window (60 s): errors per minute, a regex pattern, and the p95
of ``synth_ms``. Each alert is printed and passed to the ``tts_ops_alert`` hook; the same
alert is not repeated within the window (cooldown). Follows files across rotation.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tts_ops.logread import follow
from tts_ops.logs.records import parse


@dataclass
class Thresholds:
    error_rate: float | None = None   # errors per minute
    pattern: re.Pattern | None = None
    latency_p95: float | None = None  # ms
    window: float = 60.0


@dataclass
class _Window:
    errors: deque = field(default_factory=deque)
    latencies: deque = field(default_factory=deque)
    last_alert: dict[str, float] = field(default_factory=dict)


class LogMonitor:
    def __init__(self, sources: dict[str, Path], thresholds: Thresholds,
                 alert: Callable[[dict[str, Any]], None]) -> None:
        self.sources = sources
        self.t = thresholds
        self.alert = alert
        self.windows = {svc: _Window() for svc in sources}
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def feed(self, service: str, line: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        rec = parse(line, service)
        w = self.windows[service]
        horizon = now - self.t.window
        with self.lock:
            if rec.level in ("ERROR", "CRITICAL"):
                w.errors.append(now)
            synth = rec.fields.get("synth_ms") if rec.fields else None
            if isinstance(synth, int | float):
                w.latencies.append((now, float(synth)))
            while w.errors and w.errors[0] < horizon:
                w.errors.popleft()
            while w.latencies and w.latencies[0][0] < horizon:
                w.latencies.popleft()
            if self.t.error_rate is not None:
                rate = len(w.errors) * 60.0 / self.t.window
                if rate > self.t.error_rate:
                    self._raise(service, "error_rate", f"{rate:.1f} errors/min over the last"
                                f" {self.t.window:g}s (threshold {self.t.error_rate:g})",
                                rate, self.t.error_rate, now)
            if self.t.pattern is not None and self.t.pattern.search(line):
                self._raise(service, "pattern", f"line matches {self.t.pattern.pattern!r}:"
                            f" {line[:200]}", None, self.t.pattern.pattern, now, cooldown=False)
            if self.t.latency_p95 is not None and len(w.latencies) >= 20:
                values = sorted(v for _t, v in w.latencies)
                p95 = values[int(0.95 * (len(values) - 1))]
                if p95 > self.t.latency_p95:
                    self._raise(service, "latency_p95", f"synthesis p95 {p95:.1f} ms over the"
                                f" last {self.t.window:g}s (threshold {self.t.latency_p95:g}"
                                " ms)", p95, self.t.latency_p95, now)

    def _raise(self, service: str, kind: str, message: str, value: Any, threshold: Any,
               now: float, cooldown: bool = True) -> None:
        w = self.windows[service]
        if cooldown and now - w.last_alert.get(kind, -1e18) < self.t.window:
            return
        w.last_alert[kind] = now
        self.alert({"service": service, "kind": kind, "message": message, "value": value,
                    "threshold": threshold, "ts": now})

    def run(self, duration: float | None = None) -> None:
        threads = [threading.Thread(target=self._follow, args=(svc, path), daemon=True)
                   for svc, path in self.sources.items()]
        for t in threads:
            t.start()
        try:
            end = time.monotonic() + duration if duration is not None else None
            while not self.stop.is_set() and (end is None or time.monotonic() < end):
                time.sleep(0.1)
        finally:
            self.stop.set()
            for t in threads:
                t.join(2)

    def _follow(self, service: str, path: Path) -> None:
        for line in follow(path, poll=0.05, stop=self.stop.is_set):
            self.feed(service, line)
