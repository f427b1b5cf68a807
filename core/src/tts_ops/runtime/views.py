"""What the live views (``top``, ``web``) show: every service's status with its release and
owner, the recent lifecycle events, the deploy history and a log tail."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tts_ops.runtime.core import Runtime


@dataclass
class ServiceRow:
    status: Any          # tts_ops.backend.ServiceStatus
    release: str | None  # the release the process runs, when a deploy started it
    owner: str           # the configured service (a slot's is the service it serves)
    #: the service's router (HAProxy): its address answers for the instances behind it
    router: bool = False
    #: where clients reach it (a slot's: its service's configured address)
    address: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {**self.status.to_json(), "release": self.release, "service": self.owner,
                "health": health_of(self.status), "address": self.address}


def health_of(status: Any) -> str | None:
    """The health a view shows: the backend's last check while the process runs; none
    for one that does not (a stopped generation's last check said "passing")."""
    if str(status.state) not in ("running", "unhealthy"):
        return None
    return (status.extra or {}).get("health")


def service_rows(app: Runtime, pm: str | None) -> list[ServiceRow]:
    """Every configured service as it runs (slots included), each backend asked once."""
    from tts_ops.deploy.slots import RELEASE_LABEL
    from tts_ops.routing import is_router_process
    from tts_ops.runtime.address import address_of

    services = app.runtime(app.services((), True))
    by_name = {svc.name: svc for svc in services}
    rows = []
    for status in app.statuses(services, pm):
        svc = by_name.get(status.name)
        rows.append(ServiceRow(status, svc.labels.get(RELEASE_LABEL) if svc else None,
                               svc.owner if svc else status.name,
                               svc is not None and is_router_process(svc),
                               address_of(svc) if svc else None))
    return rows


def recent_events(app: Runtime, pm: str | None, last: int) -> list[Any]:
    """The newest ``last`` lifecycle events of every service, oldest first (backends that
    keep no history add none)."""
    from tts_ops.contracts import EventSource

    found = []
    for name, group in app.by_backend(app.runtime(app.services((), True)), pm).items():
        backend = app.backend(name)
        if isinstance(backend, EventSource):
            with contextlib.suppress(Exception):  # a view keeps going without the events
                found += list(backend.events(group, follow=False, last=last,
                                             stop=lambda: True))
    return sorted(found, key=lambda e: e.ts)[-last:]


def recent_deploys(app: Runtime, last: int) -> list[dict[str, Any]]:
    """The newest ``last`` deploy history records, newest first."""
    from tts_ops.deploy import history

    return list(reversed(history.read(app.state_dir)))[:last]


def log_tail(app: Runtime, name: str, lines: int, pm: str | None) -> list[str] | None:
    """The last ``lines`` lines of a service's log: of the generation that runs it now
    (after a deploy ``tts`` runs as ``tts-green``; with N instances each line says which),
    or of one process named exactly (a slot, a router); None when no such service or
    process is configured or running."""
    from tts_ops.routing import is_router_process

    configured = app.config.get(name)
    if configured is not None:
        processes = [s for s in app.runtime([configured]) if not is_router_process(s)]
    else:
        processes = [s for s in app.runtime(app.services((), True)) if s.name == name]
    if not processes:
        return None
    if len(processes) == 1:
        svc = processes[0]
        return list(app.backend(app.choose_backend(svc, pm)).logs(svc, lines, False))
    out: list[str] = []
    for svc in processes:
        where = svc.instance_id.split("@", 1)[-1]
        out += [f"[{where}] {line}" for line in
                app.backend(app.choose_backend(svc, pm)).logs(svc, lines, False)]
    return out[-lines:]
