"""`TTSServiceDiscovery`: pick an instance by weight, with a short cache and fail-over."""

from __future__ import annotations

import http.client
import random
import time
import urllib.parse
from typing import Any

from tts_ops.discovery.record import InstanceRecord
from tts_ops.discovery.registry import ServiceRegistry
from tts_ops.errors import OperationFailed

REFUSED_FOR = 5.0


class NoEndpoint(OperationFailed):
    pass


class TTSServiceDiscovery:
    def __init__(self, registry: ServiceRegistry, *, service: str | None = None,
                 service_type: str = "text-to-speech", cache_ttl: float = 1.0,
                 rng: random.Random | None = None) -> None:
        self.registry = registry
        self.service = service
        self.service_type = service_type
        self.cache_ttl = cache_ttl
        self.rng = rng or random.Random()
        self._cache: list[InstanceRecord] = []
        self._cached_at = -1e9
        self._refused: dict[str, float] = {}

    def _candidates(self) -> list[InstanceRecord]:
        now = time.monotonic()
        if now - self._cached_at > self.cache_ttl:
            found = self.registry.find_services(service_type=self.service_type,
                                                healthy_only=True, service=self.service)
            self._cache = [r for r in found if r.weight > 0]
            self._cached_at = now
        return [r for r in self._cache if self._refused.get(r.url, 0) <= now]

    def invalidate(self) -> None:
        self._cached_at = -1e9

    def get_endpoints(self) -> list[str]:
        """URLs of passing instances with weight > 0, heaviest first."""
        return [r.url for r in sorted(self._candidates(), key=lambda r: (-r.weight, r.id))]

    def get_endpoint(self, exclude: set[str] | None = None) -> str:
        """One URL, chosen at random in proportion to the weights."""
        pool = [r for r in self._candidates() if r.url not in (exclude or set())]
        if not pool:
            target = self.service or self.service_type
            raise NoEndpoint(f"no passing instance of {target} with weight > 0")
        return self.rng.choices(pool, weights=[r.weight for r in pool])[0].url

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 30.0
                ) -> tuple[int, dict[str, str], bytes]:
        """An HTTP request to an instance; fails over when a connection is refused or dropped."""
        tried: set[str] = set()
        while True:
            url = self.get_endpoint(exclude=tried)
            parts = urllib.parse.urlsplit(url)
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
            try:
                conn.request(method, path, body=body, headers=headers or {})
                resp = conn.getresponse()
                return resp.status, dict(resp.getheaders()), resp.read()
            except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError,
                    http.client.RemoteDisconnected):
                # refused, or dropped before any answer (an instance closing its listener
                # while it drains): another instance takes the request. Synthesis is
                # idempotent, so a retry elsewhere is safe.
                self._refused[url] = time.monotonic() + REFUSED_FOR
                tried.add(url)
                self.invalidate()
            finally:
                conn.close()

    def post_json(self, path: str, payload: Any, timeout: float = 30.0
                  ) -> tuple[int, dict[str, str], bytes]:
        import json

        return self.request("POST", path, json.dumps(payload).encode(),
                            {"Content-Type": "application/json"}, timeout)
