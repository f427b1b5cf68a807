"""What the views read of a running service's ``/metrics``: requests, 5xx answers and the
synthesis-time histogram, over one kept-open connection per service (`Scraper`), parsed by
prometheus_client; `delta` turns two samples into a rate, an error rate and a p95.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

#: the two families the views read; servers built on prometheus_client send only these
METRICS_PATH = "/metrics?name[]=tts_requests_total&name[]=tts_synthesis_seconds_bucket"
#: the requests that count: synthesis, what clients come for (not health checks, scrapes)
COUNTED = ("/synthesize", "/v1/audio/speech")


@dataclass
class Sample:
    at: float  # time.monotonic()
    requests: float
    buckets: list[tuple[float, float]] = field(default_factory=list)  # (le, cumulative count)
    errors: float = 0.0  # 5xx answers to the counted paths


@dataclass
class Delta:
    """Between two samples of one process: what happened, per second where it says so."""

    seconds: float
    requests: float
    errors: float
    buckets: list[tuple[float, float]]  # (le, count in the interval)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def p95(self) -> float | None:
        return p95(self.buckets)


class Scraper:
    """Reads each service's /metrics over a connection kept open between refreshes."""

    def __init__(self) -> None:
        self.connections: dict[tuple[str, int], Any] = {}
        self.last: dict[tuple[str, int], tuple[str, Sample | None]] = {}

    def text(self, host: str, port: int) -> str | None:
        import http.client

        host = "127.0.0.1" if host in ("0.0.0.0", "", "localhost") else host
        for attempt in range(2):  # a kept connection the server closed: once more, anew
            conn = self.connections.get((host, port))
            if conn is None:
                conn = self.connections[(host, port)] = http.client.HTTPConnection(
                    host, port, timeout=0.3)
            try:
                conn.request("GET", METRICS_PATH)
                resp = conn.getresponse()
                body = resp.read()
                if resp.will_close:
                    conn.close()
                    del self.connections[(host, port)]
                return body.decode() if resp.status == 200 else None
            except (OSError, http.client.HTTPException):
                conn.close()
                del self.connections[(host, port)]
                if attempt:
                    return None
        return None

    def sample(self, host: str, port: int) -> Sample | None:
        """Requests so far and the synthesis-time buckets, from the service's /metrics."""
        text = self.text(host, port)
        if text is None:
            return None
        # an idle service: nothing new to parse (our own scrape counts under /metrics)
        key = "\n".join(ln for ln in text.splitlines() if 'path="/metrics"' not in ln)
        last = self.last.get((host, port))
        if last is not None and last[0] == key:
            old = last[1]
            return old and Sample(time.monotonic(), old.requests, old.buckets, old.errors)
        sample = parse(text)
        self.last[(host, port)] = (key, sample)
        return sample


def parse(text: str) -> Sample | None:
    from prometheus_client.parser import text_string_to_metric_families

    sample = Sample(time.monotonic(), 0.0)
    try:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "tts_requests_total" and s.labels.get("path") in COUNTED:
                    sample.requests += s.value
                    if str(s.labels.get("status", "")).startswith("5"):
                        sample.errors += s.value
                elif s.name == "tts_synthesis_seconds_bucket":
                    sample.buckets.append((float(s.labels["le"]), s.value))
    except (ValueError, KeyError):  # not Prometheus text: a service of another kind
        return None
    sample.buckets.sort()
    return sample


def delta(old: Sample | None, new: Sample | None) -> Delta | None:
    """What happened between two samples; None without both (or a counter reset)."""
    if old is None or new is None or new.at <= old.at or new.requests < old.requests:
        return None
    before = dict(old.buckets)
    return Delta(new.at - old.at, new.requests - old.requests,
                 max(0.0, new.errors - old.errors),
                 [(le, max(0.0, count - before.get(le, 0.0))) for le, count in new.buckets])


def p95(buckets: list[tuple[float, float]]) -> float | None:
    """The upper bound of the bucket holding the 95th percentile (cumulative counts)."""
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return None
    return next((le for le, count in buckets if count >= 0.95 * total), None)

