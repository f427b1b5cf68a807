"""``tts-ops logs stats``: lines, bytes, levels, error rate, latency percentiles, top errors.

Streaming over bytes: per line a few ``find`` calls, no full JSON parse for the reference
server's lines, and a bounded latency histogram (1% buckets) instead of every value, so
memory stays flat whatever the size of the logs.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tts_ops.logs.records import MAX_MS, parse

BUCKET = math.log(1.01)
MAX_TOP = 10_000


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


@dataclass
class ServiceStats:
    service: str
    lines: int = 0
    bytes: int = 0
    levels: Counter = field(default_factory=Counter)
    requests: int = 0
    latency: dict = field(default_factory=dict)  # bucket -> count
    errors: Counter = field(default_factory=Counter)
    first: str | None = None
    last: str | None = None
    raw: int = 0
    malformed: int = 0  # records with an impossible number: counted here, skipped

    def add_latency(self, ms: float) -> None:
        bucket = int(math.log(max(ms, 0.001)) / BUCKET)
        self.latency[bucket] = self.latency.get(bucket, 0) + 1

    def percentile(self, q: float) -> float | None:
        total = sum(self.latency.values())
        if not total:
            return None
        rank = q / 100 * total
        seen = 0
        for bucket in sorted(self.latency):
            seen += self.latency[bucket]
            if seen >= rank:
                return round(math.exp((bucket + 0.5) * BUCKET), 2)
        return None

    def to_json(self) -> dict[str, Any]:
        errors = self.levels.get("ERROR", 0) + self.levels.get("CRITICAL", 0)
        minutes = None
        if self.first and self.last:
            from tts_ops.logs.records import parse_time

            a, b = parse_time(self.first), parse_time(self.last)
            if a is not None and b is not None:
                minutes = max((b - a) / 60, 1 / 60)
        return {
            "service": self.service, "lines": self.lines, "bytes": self.bytes,
            "levels": dict(self.levels), "unparsed_lines": self.raw,
            "malformed_lines": self.malformed,
            "errors": errors,
            "errors_per_minute": round(errors / minutes, 3) if minutes else None,
            "requests": self.requests,
            "synth_ms": {"p50": self.percentile(50), "p95": self.percentile(95),
                         "p99": self.percentile(99)},
            "top_errors": [{"msg": m, "count": c} for m, c in self.errors.most_common(5)],
            "first": self.first, "last": self.last,
        }


def consume(st: ServiceStats, lines, since: str | None, until: str | None) -> None:
    """Count a stream of lines. ``since``/``until`` are ISO UTC strings, compared as strings.

    One loop with locals, bytes kept as bytes until the end: this is the hot path.
    """
    lo = since.encode() if since else None
    hi = until.encode() if until else None
    levels: dict[bytes, int] = {}
    latency = st.latency
    errors = st.errors
    log = math.log
    first = st.first.encode() if st.first else None
    last = st.last.encode() if st.last else None
    n = nbytes = requests = malformed = 0
    slow: list[bytes] = []
    for line in lines:
        if line.startswith(b'{"ts": "'):
            ts = line[8:32]
            if (lo and ts < lo) or (hi and ts > hi):
                continue
            i = line.find(b'"level": "', 32)
            if i > 0:
                j = line.find(b'"', i + 10)
                level = line[i + 10 : j]
                k = line.find(b'"synth_ms": ', j)
                ms = None
                if k > 0:
                    end = line.find(b",", k)
                    if end < 0:
                        end = line.find(b"}", k)
                    try:
                        ms = float(line[k + 12 : end])
                    except ValueError:
                        ms = None
                    # NaN fails both comparisons: impossible numbers are malformed
                    if ms is not None and not 0 <= ms <= MAX_MS:
                        malformed += 1
                        continue
                n += 1
                nbytes += len(line)
                levels[level] = levels.get(level, 0) + 1
                if first is None:
                    first = ts
                last = ts
                if ms is not None:
                    bucket = int(log(max(ms, 0.001)) / BUCKET)
                    latency[bucket] = latency.get(bucket, 0) + 1
                    requests += 1
                elif line.find(b'"event": "request"', j) > 0:
                    requests += 1
                if level == b"ERROR" or level == b"CRITICAL":
                    m = line.find(b'"msg": "', j)
                    msg = line[m + 8 : line.find(b'"', m + 8)].decode("utf-8", "replace") \
                        if m > 0 else "?"
                    if msg in errors or len(errors) < MAX_TOP:
                        errors[msg] += 1
                continue
        slow.append(line)
        if len(slow) >= 1024:
            _slow_lines(st, slow, since, until)
            slow.clear()
    _slow_lines(st, slow, since, until)
    st.lines += n
    st.malformed += malformed
    st.bytes += nbytes
    st.requests += requests
    for level, count in levels.items():
        st.levels[level.decode("ascii", "replace")] += count
    if first is not None and (st.first is None or first.decode() < st.first):
        st.first = first.decode()
    if last is not None and (st.last is None or last.decode() > st.last):
        st.last = last.decode()


def _slow_lines(st: ServiceStats, lines: list[bytes], since: str | None, until: str | None
                ) -> None:
    for line in lines:
        accumulate(st, line, since, until)


def accumulate(st: ServiceStats, line: bytes, since: str | None, until: str | None) -> None:
    """Count one line of any format (the slow path: plain text, other JSON)."""
    rec = parse(line.decode("utf-8", "replace").rstrip("\n"), st.service)
    if rec.malformed:
        st.malformed += 1
        return
    when = iso(rec.ts) if rec.ts is not None else None
    if when is not None and ((since and when < since) or (until and when > until)):
        return
    if (since or until) and when is None:
        return  # outside any window we can tell
    st.lines += 1
    st.bytes += len(line)
    if rec.level is None:
        st.raw += 1
        st.levels["UNKNOWN"] += 1
    else:
        st.levels[rec.level] += 1
    if when is not None:
        if st.first is None or when < st.first:
            st.first = when
        if st.last is None or when > st.last:
            st.last = when
    synth = rec.fields.get("synth_ms") if rec.fields else None
    if isinstance(synth, int | float):
        st.add_latency(float(synth))
        st.requests += 1
    if rec.level in ("ERROR", "CRITICAL"):
        msg = rec.msg or rec.raw
        if msg in st.errors or len(st.errors) < MAX_TOP:
            st.errors[msg[:200]] += 1
