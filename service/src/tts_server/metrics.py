"""Prometheus metrics, one registry per app (so tests can build several apps).

With ``--workers N`` each worker counts on its own: prometheus_client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``, set by the CLI before anything imports prometheus_client)
keeps every worker's values
in a shared directory, and a scrape, whichever worker answers it, sums them. Counters of a
worker that died stay in the sum, so they never go backwards.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess() -> bool:
    return bool(os.environ.get(ENV))


def render(registry: CollectorRegistry, names: list[str] | None = None) -> bytes:
    """The text a scrape gets: this process's registry, or every worker's summed; with
    ``names`` (``?name[]=`` as prometheus_client's servers take it), only those samples."""
    from prometheus_client import generate_latest

    if multiprocess():
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry(auto_describe=True)  # names known, for name[]
        MultiProcessCollector(registry)
    return generate_latest(registry.restricted_registry(names) if names else registry)


def worker_died(pid: int) -> None:
    """Drop a dead worker's live gauges (its counters stay in the sums)."""
    if multiprocess():
        from prometheus_client.multiprocess import mark_process_dead

        mark_process_dead(pid)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("tts_requests", "HTTP requests by path and status",
                                ["path", "status"], registry=self.registry)
        self.synthesis = Histogram(
            "tts_synthesis_seconds", "Synthesis latency",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.sessions = Counter("tts_synthesis_sessions", "Syntheses by the engine session"
                                " that ran them (piper: solo, every core for a lone request;"
                                " shared, the worker's share)", ["session"],
                                registry=self.registry)
        self.errors = Counter("tts_errors", "Errors by kind", ["kind"], registry=self.registry)
        for kind in ("synthesis", "http_5xx"):  # at 0 from the start, in every mode
            self.errors.labels(kind)
        self.in_flight = Gauge("tts_in_flight_requests", "Synthesis requests in flight",
                               registry=self.registry, multiprocess_mode="livesum")
        self.ready = Gauge("tts_ready", "1 when the engine is warmed up (every worker's)",
                           registry=self.registry, multiprocess_mode="livemin")
        self.rejected = Counter("tts_rejected", "Requests refused because the queue was full",
                                registry=self.registry)
        self.cache_hits = Counter("tts_cache_hits", "Answers served from the audio cache or"
                                  " from an identical request's synthesis",
                                  registry=self.registry)
        self.cache_misses = Counter("tts_cache_misses", "Answers the engine had to synthesize",
                                    registry=self.registry)
        # every worker sees the same directory: the latest count is the cache's size
        self.cache_bytes = Gauge("tts_cache_bytes", "Bytes the audio cache holds",
                                 registry=self.registry, multiprocess_mode="mostrecent")
        self.connections_closed = Counter(
            "tts_connections_closed", "Connections closed by a limit (busy, evicted,"
            " header_timeout)", ["reason"], registry=self.registry)
