"""What a strategy works with: `DeployContext`, and `DeployFailed` to abort with a reason."""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from tts_ops.backend import StartFailed
from tts_ops.errors import OperationFailed

if TYPE_CHECKING:
    from tts_ops.backend import ProcessBackend
    from tts_ops.config.models import ServiceConfig
    from tts_ops.contracts import Router
    from tts_ops.routing import RouterServer

#: the requests a canary step counts by default: synthesis, what clients come for
COUNTED_PATHS = ("/synthesize", "/v1/audio/speech")


class DeployFailed(OperationFailed):
    """The deploy could not complete; the strategy restored the old release before raising."""

    def __init__(self, reason: str, log_tail: list[str] | None = None) -> None:
        super().__init__(reason, details=log_tail or [])
        self.reason = reason
        self.log_tail = log_tail or []


@dataclass
class DeployContext:
    #: services are `ServiceConfig` values (a release's snapshot is a view of the same
    #: fields): ``service`` is the base config for this environment, ``old`` and ``new``
    #: the slots of the generation serving and of the one being deployed
    service: ServiceConfig
    old: list[ServiceConfig]
    new: list[ServiceConfig]
    backend: ProcessBackend
    registry: Any
    settings: Any                     # service.deploy
    release_id: str
    step: Callable[..., Any]          # step(name, fn, *args) runs and times a phase
    log: Callable[[str], None]
    emit: Callable[..., None]
    verify_hooks: Callable[[Any, str], list[str]]
    deadline: float = 0.0
    started: list[ServiceConfig] = field(default_factory=list)  # new ones started so far
    stopped: list[ServiceConfig] = field(default_factory=list)  # old ones stopped so far
    downtime_s: float | None = None
    #: structured progress for displays: progress("weights", weights={...}) or
    #: progress("samples", step=10, samples=40, need=50, errors=0)
    progress: Callable[..., None] = field(default=lambda kind, **data: None)
    #: raises if whoever follows the deploy went away (its output closed), asked while
    #: the deploy waits without writing
    watch: Callable[[], None] = field(default=lambda: None)
    #: ``deploy.<strategy>`` validated by the strategy's options model (None without one)
    options: Any = None
    #: the service's router (`tts_ops.contracts.Router`), None without one; ``servers``:
    #: what it routes to, by server name (the engine fills it with the old generation)
    router: Router | None = None
    servers: dict[str, RouterServer] = field(default_factory=dict)

    # --- processes ---

    def start(self, svc: ServiceConfig) -> Any:
        """Start a new instance; behind a router it is added at its initial weight."""
        self.check_deadline()
        # recorded before its start begins: an interrupt at any point of the start (the
        # process may already serve on the inherited socket) is stopped by the rollback
        self.started.append(svc)
        try:
            status = self.backend.start(svc)
        except StartFailed as exc:
            raise DeployFailed(f"{svc.name} did not start: {exc.reason}", exc.log_tail) from None
        self._route(svc, int(svc.labels.get("tts-ops/initial-weight", 100)))
        return status

    def bring_back(self, svc: ServiceConfig, weight: int = 0) -> None:
        """Start an instance of the old release again (a rollback); behind a router at
        ``weight`` (0: until the strategy gives the old release its weight back)."""
        self.backend.start(svc)
        self._route(svc, weight)

    def stop(self, svc: ServiceConfig) -> None:
        """Stop an instance; behind a router, it is drained first (no new request, the
        ones in flight finish) and taken out."""
        if self.router is not None:
            from tts_ops.routing import server_name

            name = server_name(svc)
            if name in self.servers:
                left = self.router.drain(self.service, [name], float(svc.stop_timeout))
                if left:
                    self.log(f"{name}: {left} requests still in flight after"
                             f" {svc.stop_timeout:g}s of draining; stopping it anyway")
                del self.servers[name]
                self.router.sync(self.service, list(self.servers.values()))
        self.backend.stop(svc)

    def _route(self, svc: ServiceConfig, weight: int) -> None:
        if self.router is None:
            return
        from tts_ops.routing import server_of

        server = server_of(svc, weight)
        self.servers[server.name] = server
        self.router.sync(self.service, list(self.servers.values()))

    def running(self, svc: ServiceConfig) -> bool:
        return str(self.backend.status([svc])[0].state) in ("running", "unhealthy")

    # --- traffic ---

    def record_id(self, svc: ServiceConfig) -> str:
        slot = svc.labels.get("tts-ops/slot")
        return f"{self.service.name}@{slot}" if slot else svc.name

    def set_weights(self, weights: dict[str, int]) -> None:
        """Set weights by service name: the router's (exact shares, at once) and the
        discovery records'; plugins follow the same switch."""
        by_id = {}
        routed = {}
        for name, weight in weights.items():
            svc = next(s for s in [*self.old, *self.new] if s.name == name)
            rid = self.record_id(svc)
            by_id[rid] = weight
            if self.router is not None:
                from tts_ops.routing import server_name

                server = self.servers.get(server_name(svc))
                if server is not None:
                    routed[server.name] = weight
                    self.servers[server.name] = replace(server, weight=weight)
        if routed and self.router is not None:
            self.router.set_weights(self.service, routed)
        for rid, weight in by_id.items():
            self.registry.set_weight(rid, weight)
        self.emit("tts_ops_traffic_switched", service=self.service, weights=by_id)
        self.progress("weights", weights=by_id)
        self.log("weights: " + ", ".join(f"{k}={v}" for k, v in by_id.items()))

    def pause(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.check_deadline()
            self.watch()
            time.sleep(min(0.1, max(0.0, end - time.monotonic())))

    def check_deadline(self) -> None:
        if self.deadline and time.monotonic() > self.deadline:
            raise DeployFailed(f"progress deadline of {self.settings.progress_deadline_seconds:g}s"
                               " passed")

    # --- checks ---

    def verify(self, svc: ServiceConfig) -> None:
        """Health, then a real synthesis for the reference server, then the plugins' checks."""
        from tts_ops.health import check_service

        result = check_service(svc)
        if not result.ok:
            raise DeployFailed(f"verification of {svc.name}: health check failed"
                               f" ({result.detail})")
        if svc.uses_reference_server and self.settings.verify_text:  # "" with --skip-tests
            problem = verify_synthesis(svc, self.settings.verify_text)
            if problem:
                raise DeployFailed(f"verification of {svc.name}: {problem}")
        problems = self.verify_hooks(svc, base_url(svc))
        if problems:
            raise DeployFailed(f"verification of {svc.name}: " + "; ".join(problems))
        self.log(f"verified {svc.name}: health passing"
                 + (", speech synthesized" if svc.uses_reference_server else ""))

    def router_counters(self, svc: ServiceConfig) -> tuple[int, int] | None:
        """(requests, errors) the router counted for ``svc`` so far (5xx answers, failed
        connections, broken responses); None without a router."""
        if self.router is None:
            return None
        from tts_ops.routing import server_name

        name = server_name(svc)
        for server in self.router.status(self.service).servers:
            if server.name == name:
                return server.requests, server.errors
        return 0, 0

    def counters(self, svc: ServiceConfig, paths: tuple[str, ...] | list[str] = COUNTED_PATHS
                 ) -> tuple[int, int]:
        """(requests, 5xx responses) to ``paths`` so far, from the service's /metrics
        (``tts_requests_total{path, status}``, read with prometheus_client's parser)."""
        parts = urllib.parse.urlsplit(base_url(svc))
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=5)
        try:
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
        except (OSError, http.client.HTTPException):
            return 0, 0
        finally:
            conn.close()
        from prometheus_client.parser import text_string_to_metric_families

        total = errors = 0
        try:
            for family in text_string_to_metric_families(text):
                if family.name != "tts_requests":
                    continue
                for sample in family.samples:
                    if sample.name != "tts_requests_total" or \
                            sample.labels.get("path") not in paths:
                        continue
                    total += int(sample.value)
                    if sample.labels.get("status", "").startswith("5"):
                        errors += int(sample.value)
        except ValueError:  # not the exposition format: nothing counted
            return 0, 0
        return total, errors


def base_url(svc: ServiceConfig) -> str:
    host = "127.0.0.1" if svc.host in ("0.0.0.0", "", "localhost") else svc.host
    return f"http://{host}:{svc.port}"


def verify_synthesis(svc: ServiceConfig, text: str) -> str | None:
    """Synthesize ``text`` on the new instance; a problem in one line, or None."""
    parts = urllib.parse.urlsplit(base_url(svc))
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        conn.request("POST", "/synthesize", body=json.dumps({"text": text}),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        return f"synthesis request failed ({exc})"
    finally:
        conn.close()
    if resp.status != 200:
        return f"synthesis answered HTTP {resp.status}"
    if len(body) <= 44 or body[:4] != b"RIFF" or body[8:12] != b"WAVE":
        return "synthesis did not return a WAV file"
    data = body.find(b"data")
    if data < 0 or int.from_bytes(body[data + 4 : data + 8], "little") == 0:
        return "synthesis returned an empty WAV file"
    return None
