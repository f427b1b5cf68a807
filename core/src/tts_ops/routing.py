"""Routers in front of a service (``"router": "haproxy"``): what the core tells them and
reads back, and the core's side of running one.

A routed service's frontend (the router) owns its configured ``host:port``; every
instance, slot and canary listens on a private loopback port behind it, as a *server*
named after its slot (``blue``, ``green-1``). The router runs as one more process of the
service, ``NAME-router``, under the service's process backend, so ``status`` shows it and
``stop --all`` stops it. Deploys change its servers and weights live (`Router.sync`,
`Router.set_weights`, `Router.drain`); a router restarted by its supervisor reads the
same servers and weights from the config the router keeps written.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tts_ops.deploy.slots import SLOT_LABEL
from tts_ops.errors import OperationFailed

if TYPE_CHECKING:
    from tts_ops.runtime.core import Runtime

#: on the router's own process: it is not an instance (discovery skips it)
ROLE_LABEL = "tts-ops/role"


@dataclass(frozen=True)
class RouterServer:
    """One instance behind the router: ``name`` is its slot, ``weight`` 0-100."""

    name: str
    host: str
    port: int
    weight: int


@dataclass
class ServerState:
    """A server as the router sees it now."""

    name: str
    address: str
    weight: int
    state: str            # UP, DOWN, DRAIN, MAINT, ... in the router's words
    check: str            # the last health check's result
    sessions: int         # requests being served now
    requests: int         # requests sent to it so far
    errors: int           # 5xx answers, failed connections and broken responses


@dataclass
class RouterState:
    """``tts-ops router status``: the frontend and its servers."""

    service: str
    router: str
    address: str
    frontend: str
    running: bool
    worker_pid: int | None = None
    servers: list[ServerState] = field(default_factory=list)
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def server_name(svc: Any) -> str:
    """The server an instance is behind the router: its slot, or ``plain``."""
    return svc.labels.get(SLOT_LABEL) or "plain"


def server_of(svc: Any, weight: int) -> RouterServer:
    return RouterServer(server_name(svc), svc.host, svc.port, weight)


def is_remote(name: str) -> bool:
    """A server for another host's instance (``blue-0.web-2``); this host's have no dot."""
    return "." in name


def remote_servers(app: Runtime, service: Any) -> list[RouterServer]:
    """With ``router_scope: cluster``, the instances of ``service`` that other hosts keep
    in the shared registry (etcd) and that are not critical, named ``SLOT.NODE``; else
    none. HAProxy's own checks still decide which of them get requests."""
    if getattr(service, "router_scope", None) != "cluster":
        return []
    import re

    from tts_ops.discovery.record import node_of

    registry = app.registry()
    now = time.time()
    out = []
    for rec in registry.find_services(service=service.name):
        if registry.is_local(rec.id) or rec.effective_health(now) == "critical":
            continue
        slot = rec.labels.get(SLOT_LABEL) or "plain"
        node = re.sub(r"[^a-z0-9_-]", "-", (node_of(rec.id) or "remote").lower())
        out.append(RouterServer(f"{slot}.{node}"[:63], rec.host, rec.port, rec.weight))
    return sorted(out, key=lambda s: s.name)


def follow_remote(app: Runtime, change: dict[str, Any]) -> None:
    """Another host's instance of a ``router_scope: cluster`` service changed (``discovery
    watch`` saw it): route to that host's instances as they are now, this host's as the
    router has them."""
    service = app.config.get(change.get("service") or "")
    if service is None or getattr(service, "router_scope", None) != "cluster":
        return
    if app.registry().is_local(change["id"]):
        return
    router = app.router(service)
    state = router.status(service)
    if not state.running:
        return  # its next start routes to what is registered then
    local = []
    for server in state.servers:
        if not is_remote(server.name):
            host, _, port = server.address.rpartition(":")
            local.append(RouterServer(server.name, host, int(port), server.weight))
    router.sync(service, local + remote_servers(app, service))


def router_for(host: Any, state_dir: Path, service: Any) -> Any | None:
    """The router of ``service`` (a `tts_ops.contracts.Router`), or None without one."""
    if not getattr(service, "router", None):
        return None
    return host.lookup("router", service.router).factory(state_dir)


def is_router_process(svc: Any) -> bool:
    """Whether ``svc`` is a router's own process (``NAME-router``), not an instance."""
    return svc.labels.get(ROLE_LABEL) == "router"


def ensure(router: Any, service: Any, backend: Any, servers: list[RouterServer]) -> Any:
    """The router of ``service`` running in front of exactly ``servers``: its config
    written and checked, changes applied live, started by ``backend`` when it is not
    running, reloaded seamlessly (never restarted) when more than its servers changed."""
    reload = router.sync(service, servers)
    process = router.process(service)
    status = backend.status([process])[0]
    if str(status.state) in ("running", "unhealthy", "starting"):
        if reload and status.pid:
            router.reload(service, status.pid)
        return process
    backend.start(process)
    return process


def wait_routable(router: Any, service: Any, names: list[str], timeout: float) -> None:
    """Return when the router sees every server of ``names`` up (its health check passed)."""
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    while True:
        state = router.status(service)
        seen = {s.name: s.state for s in state.servers}
        if all(seen.get(n, "").startswith("UP") for n in names):
            return
        if time.monotonic() > deadline:
            waiting = ", ".join(f"{n} {seen.get(n, 'absent')}" for n in names
                                if not seen.get(n, "").startswith("UP"))
            raise OperationFailed(f"{service.name}: the router did not see its servers up"
                                  f" within {timeout:g}s ({waiting})")
        time.sleep(0.1)


def prepare_start(app: Runtime, service: Any, pm: str | None) -> None:
    """Before ``start``: the instances' private ports chosen and kept, and the router's
    config written for them, so that the router starts beside them (a running router
    takes them live, and reloads if its own settings changed)."""
    from tts_ops.deploy.slots import claim_generation, runtime_services

    claim_generation(app.state_dir, service, app.private_host(service))
    router = app.router(service)
    servers = [server_of(s, 100) for s in runtime_services(app.state_dir, service)]
    if router.sync(service, servers + remote_servers(app, service)):
        process = router.process(service)
        status = app.backend(app.choose_backend(service, pm)).status([process])[0]
        if status.pid:
            router.reload(service, status.pid)


def finish_start(app: Runtime, service: Any) -> None:
    """After ``start``: return only when the router sees every instance up."""
    from tts_ops.deploy.slots import runtime_services

    names = [server_name(s) for s in runtime_services(app.state_dir, service)]
    wait_routable(app.router(service), service, names, service.start_timeout)
