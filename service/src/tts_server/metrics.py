"""Prometheus metrics, one registry per app (so tests can build several apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
        self.errors = Counter("tts_errors", "Errors by kind", ["kind"], registry=self.registry)
        self.in_flight = Gauge("tts_in_flight_requests", "Synthesis requests in flight",
                               registry=self.registry)
        self.ready = Gauge("tts_ready", "1 when the engine is warmed up", registry=self.registry)
        self.rejected = Counter("tts_rejected", "Requests refused because the queue was full",
                                registry=self.registry)
        self.connections_closed = Counter(
            "tts_connections_closed", "Connections closed by a limit (busy, evicted,"
            " header_timeout)", ["reason"], registry=self.registry)
