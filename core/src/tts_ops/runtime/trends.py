"""Each service's request rate, p95 synthesis time and errors over the last 15 minutes,
from the samples the live views take of its instances' ``/metrics`` (`Trends`), for the
web page's and ``top``'s charts; the deploys go on the same time axis.

A service's point sums its instances (every generation that answered in the interval:
during a deploy, old and new), and its p95 is read from their histograms merged, not from
each instance's own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tts_ops.runtime.metrics import Delta, Sample, Scraper, delta, p95

WINDOW_S = 900.0


@dataclass(frozen=True)
class Point:
    at: float             # wall-clock time (time.time()) of the sample
    rate: float           # counted requests per second
    p95: float | None     # seconds; None when no synthesis finished in the interval
    errors: float         # 5xx answers per second

    def to_json(self) -> list[Any]:
        return [round(self.at, 3), round(self.rate, 3),
                None if self.p95 is None else round(self.p95 * 1000, 1),
                round(self.errors, 3)]


class Trends:
    def __init__(self, scraper: Scraper | None = None, window_s: float = WINDOW_S) -> None:
        self.scraper = scraper or Scraper()
        self.window_s = window_s
        self.samples: dict[str, Sample | None] = {}   # by process name
        self.points: dict[str, list[Point]] = {}      # by service
        self.last: dict[str, Delta | None] = {}       # by process name: the last interval

    def observe(self, rows: list[Any]) -> None:
        """Sample every running instance of ``rows`` (`tts_ops.runtime.views.ServiceRow`)
        once and add a point per service."""
        now = time.time()
        by_service: dict[str, list[Delta]] = {}
        seen = set()
        for row in rows:
            status = row.status
            if row.router or not status.port or str(status.state) not in ("running",
                                                                          "unhealthy"):
                continue
            seen.add(status.name)
            new = self.scraper.sample(status.host, status.port)
            found = delta(self.samples.get(status.name), new)
            self.samples[status.name] = new
            self.last[status.name] = found
            by_service.setdefault(row.owner, [])
            if found is not None:
                by_service[row.owner].append(found)
        for name in [n for n in self.samples if n not in seen]:  # stopped: start anew
            del self.samples[name]
            self.last.pop(name, None)
        for service, deltas in by_service.items():
            if deltas:
                self._add(service, merge(now, deltas))
        cutoff = now - self.window_s
        for service in list(self.points):
            kept = [p for p in self.points[service] if p.at >= cutoff]
            if kept:
                self.points[service] = kept
            else:
                del self.points[service]

    def _add(self, service: str, point: Point) -> None:
        self.points.setdefault(service, []).append(point)

    def rate_and_p95(self, name: str) -> tuple[float | None, float | None]:
        """One process's last interval (``top``'s columns)."""
        found = self.last.get(name)
        return (found.rate, found.p95()) if found is not None else (None, None)

    def to_json(self, columns: int = 90, now: float | None = None
                ) -> dict[str, list[list[Any]]]:
        """Each service's points, at most ``columns`` of them over the time it has (10 s
        each over a full 15 minutes: a page polled every 2 s gets a bounded answer): the
        points of a column merged."""
        now = time.time() if now is None else now
        out = {}
        for service, points in self.points.items():
            width = max(now - min(p.at for p in points), 1e-3) / columns
            groups: dict[int, list[Point]] = {}
            for point in points:
                groups.setdefault(int((now - point.at) // width), []).append(point)
            out[service] = [combine(groups[k]).to_json() for k in sorted(groups, reverse=True)]
        return out


def combine(points: list[Point]) -> Point:
    """Points of one column as one: the mean rates, the largest p95, the latest time."""
    known = [p.p95 for p in points if p.p95 is not None]
    return Point(max(p.at for p in points), sum(p.rate for p in points) / len(points),
                 max(known) if known else None, sum(p.errors for p in points) / len(points))


def merge(at: float, deltas: list[Delta]) -> Point:
    """One service's point from its instances' intervals: rates summed, histograms merged."""
    rate = sum(d.rate for d in deltas)
    errors = sum(d.errors / d.seconds for d in deltas)
    merged: dict[float, float] = {}
    for d in deltas:
        for le, count in d.buckets:
            merged[le] = merged.get(le, 0.0) + count
    return Point(at, rate, p95(sorted(merged.items())), errors)


def span(points: list[Point], times: list[float], now: float,
         window_s: float = WINDOW_S) -> float:
    """The seconds a chart shows: from its first point or deploy to ``now``, at least 10 s,
    at most the window (a fresh view's first minute fills the width)."""
    first = min([p.at for p in points] + [t for t in times if t >= now - window_s],
                default=now)
    return max(10.0, min(window_s, now - first))


def columns(points: list[Point], field: str, width: int, now: float,
            window_s: float = WINDOW_S) -> list[float | None]:
    """``field`` of ``points`` in ``width`` columns of equal time ending at ``now``, each
    the largest value in its time (None: nothing sampled then)."""
    out: list[float | None] = [None] * width
    start = now - window_s
    for point in points:
        i = min(width - 1, int((point.at - start) / window_s * width))
        value = getattr(point, field)
        if 0 <= i < width and value is not None:
            seen = out[i]
            out[i] = value if seen is None else max(seen, value)
    return out


def spark(cells: list[float | None]) -> str:
    """Columns as block characters scaled to the largest; a blank where none was sampled."""
    blocks = "▁▂▃▄▅▆▇█"
    top = max((c for c in cells if c is not None), default=0.0)
    return "".join(" " if c is None else blocks[0] if top <= 0 else
                   blocks[min(7, int(c / top * 7.999))] for c in cells)


def marks(times: list[float], width: int, now: float, window_s: float = WINDOW_S) -> str:
    """A ``^`` under the column of each time (deploys), on the same axis as `columns`."""
    line = [" "] * width
    start = now - window_s
    for at in times:
        i = min(width - 1, int((at - start) / window_s * width))
        if i >= 0:
            line[i] = "^"
    return "".join(line)
