"""``tts-ops logs stats``: lines, bytes, levels, error rate, latency percentiles, top errors.

Streaming over bytes: per line a few ``find`` calls, no full JSON parse for the reference
server's lines, and a bounded latency histogram (1% buckets) instead of every value, so
memory stays flat whatever the size of the logs.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tts_ops.logs.records import MAX_MS, parse

BUCKET = math.log(1.01)
MAX_TOP = 10_000


def iso(ts: float) -> str:
    """``ts`` as the reference server writes it (UTC, milliseconds): rounded, not cut, so
    a time parsed from that text prints back the same."""
    ms = round(ts * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


_FAST_LEVELS = frozenset((b"DEBUG", b"INFO", b"WARNING"))  # errors take the slow path
_SECOND = re.compile(rb"\d{4}-\d\d-\d\dT(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d")
_seconds: dict[bytes, bool] = {}


def _second_ok(second: bytes) -> bool:
    """``YYYY-MM-DDTHH:MM:SS`` names a real, plausible second (as the slow path reads it).
    Lines of one second share the answer: the hot loop asks a dict, not a parser."""
    ok = _seconds.get(second)
    if ok is None:
        from tts_ops.logs.records import parse_time, plausible_ts

        when = parse_time(second.decode()) if _SECOND.fullmatch(second) else None
        ok = when is not None and plausible_ts(when) and plausible_ts(when + 0.999)
        if len(_seconds) > 100_000:
            _seconds.clear()
        _seconds[second] = ok
    return ok


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

    One loop with locals, bytes kept as bytes until the end: this is the hot path. A line
    takes the fast path only when a few ``find`` calls read it exactly as ``json.loads``
    would: the reference server's key order and time format, nothing nested, each key it
    reads there once, a time that names a real second, a level that needs no alias and is
    not an error (errors are rare and need their message). A key cannot hide in a string:
    there every quote is escaped, so ``"synth_ms": `` only ever finds a key; a value it
    cannot read as a number sends the line to the slow path. Everything else goes through
    `accumulate`, the one parser; a property test holds the two to the same answers for
    every line that is JSON, and for any other bytes. (A line broken in the middle but
    still shaped like the server's at both ends is counted as its record would be:
    checking the whole grammar with a regex cost 3.6x the time.)
    """
    lo = since.encode() if since else None
    hi = until.encode() if until else None
    levels: dict[bytes, int] = {}
    latency = st.latency
    log = math.log
    first = st.first.encode() if st.first else None
    last = st.last.encode() if st.last else None
    n = nbytes = requests = malformed = 0
    slow: list[bytes] = []
    second_ok, fast_levels, seconds = _second_ok, _FAST_LEVELS, _seconds
    for line in lines:
        if (line.startswith(b'{"ts": "') and line.startswith(b'", "level": "', 32)
                and line[27] == 46 and line[31] == 90 and line[28:31].isdigit()  # ".mmmZ"
                and (line.endswith(b"}\n") or line.endswith(b"}"))
                and line.find(b"{", 1) < 0
                and (seconds.get(line[8:27]) or second_ok(line[8:27]))):
            j = line.find(b'"', 45)
            level = line[45:j]
            k = line.find(b'"synth_ms": ', j)
            e = line.find(b'"event": ', j) if k < 0 else -1
            if (level in fast_levels and line.find(b'"ts": ', 8) < 0
                    and line.find(b'"level": ', j) < 0
                    and (k < 0 or line.find(b'"synth_ms": ', k + 12) < 0)
                    and (e < 0 or line.find(b'"event": ', e + 9) < 0)):
                ms = None
                if k > 0:
                    end = line.find(b",", k)
                    if end < 0:
                        end = line.rfind(b"}")
                    try:
                        ms = float(line[k + 12 : end])
                    except ValueError:  # not a number (null, a string, false): rare
                        slow.append(line)
                        continue
                    # NaN fails both comparisons: impossible numbers are malformed
                    if not 0 <= ms <= MAX_MS:
                        malformed += 1
                        continue
                ts = line[8:32]
                if (lo and ts < lo) or (hi and ts > hi):
                    continue
                n += 1
                nbytes += len(line)
                levels[level] = levels.get(level, 0) + 1
                if first is None or ts < first:
                    first = ts
                if last is None or ts > last:
                    last = ts
                if ms is not None:
                    bucket = int(log(max(ms, 0.001)) / BUCKET)
                    latency[bucket] = latency.get(bucket, 0) + 1
                    requests += 1
                elif e > 0 and line.startswith(b'"event": "request"', e):
                    requests += 1
                continue
        slow.append(line)
        if len(slow) >= 1024:
            _slow_lines(st, slow, since, until)
            slow.clear()
    _slow_lines(st, slow, since, until)
    _add_counts(st, n, nbytes, requests, malformed, levels, first, last)


def _add_counts(st: ServiceStats, n: int, nbytes: int, requests: int, malformed: int,
                levels: dict[bytes, int], first: bytes | None, last: bytes | None) -> None:
    """Fold the fast path's counts (kept in locals, bytes as bytes) into ``st``."""
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
    rec = parse(line.decode("utf-8", "replace").rstrip("\n"), st.service, lenient=True)
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
    if isinstance(synth, int | float) and not isinstance(synth, bool):
        st.add_latency(float(synth))
        st.requests += 1
    elif rec.fields and rec.fields.get("event") == "request":
        st.requests += 1
    if rec.level in ("ERROR", "CRITICAL"):
        msg = (rec.msg if rec.msg is not None else rec.raw)[:200]
        if msg in st.errors or len(st.errors) < MAX_TOP:
            st.errors[msg] += 1


def merge(into: ServiceStats, other: ServiceStats) -> None:
    """Add ``other``'s counts to ``into`` (the same service, other lines)."""
    into.lines += other.lines
    into.bytes += other.bytes
    into.levels.update(other.levels)
    into.requests += other.requests
    for bucket, count in other.latency.items():
        into.latency[bucket] = into.latency.get(bucket, 0) + count
    into.errors.update(other.errors)
    into.raw += other.raw
    into.malformed += other.malformed
    if other.first is not None and (into.first is None or other.first < into.first):
        into.first = other.first
    if other.last is not None and (into.last is None or other.last > into.last):
        into.last = other.last


PARALLEL_BYTES = 64 * 2**20  # below this, starting workers costs more than it saves


def _one_file(args: tuple[str, Any, str | None, str | None]) -> tuple[ServiceStats, list[str]]:
    from tts_ops.logs.sources import iter_lines

    service, path, since, until = args
    skipped: list[str] = []
    st = ServiceStats(service)
    consume(st, (line for _f, line in iter_lines([path], skipped.append)), since, until)
    return st, skipped


def consume_files(st: ServiceStats, files: list[Any], since: str | None, until: str | None,
                  skip: Any) -> None:
    """`consume` every file (rotated ones included), one worker process per core when
    there is enough to read: the counts do not depend on the order of the lines."""
    import os

    from tts_ops.logs.sources import iter_lines

    cores = len(os.sched_getaffinity(0))
    size = 0
    for path in files:
        try:
            size += os.stat(path).st_size
        except OSError:
            pass
    if cores < 2 or len(files) < 2 or size < PARALLEL_BYTES:
        consume(st, (line for _f, line in iter_lines(files, skip)), since, until)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=min(cores, len(files)),
                             mp_context=multiprocessing.get_context("fork")) as pool:
        for part, skipped in pool.map(_one_file, [(st.service, f, since, until)
                                                  for f in files]):
            merge(st, part)
            for message in skipped:
                skip(message)
