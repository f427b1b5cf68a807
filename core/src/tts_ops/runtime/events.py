"""Lifecycle events as the service's, whatever generation had them: `EventFeed` reads them
from every backend at once (history and ``follow``), `describe` and `as_json` say one, and
`dispatch` passes a new one to the plugins' hooks.

Restarts, crashes and failures happen inside process managers, not in tts-ops; this is the
bridge that lets plugins (discovery, alerting) see them for every backend.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tts_ops.errors import OperationFailed

if TYPE_CHECKING:
    from tts_ops.runtime.core import Runtime


def every_process(rt: Runtime, configured: list[Any]) -> list[Any]:
    """Every name the services have run under or may run under: the plain service, each
    generation's slots and the router (a deploy moves a service from one to the other
    while ``events -f`` runs), and what runs now (a deploy under way)."""
    from tts_ops.deploy.slots import slot_services

    every: dict[str, Any] = {}
    for svc in configured:
        # what runs first: its slots' real addresses go into the hooks' statuses; the
        # others only name where events may come from (no port is chosen for them)
        unused = [1] * svc.instances
        for one in [*rt.runtime([svc]), svc,
                    *slot_services(svc, "blue", None, None, 100, ports=unused),
                    *slot_services(svc, "green", None, None, 100, ports=unused)]:
            every.setdefault(one.name, one)
    return list(every.values())


def state_after(kind: str) -> tuple[Any, bool]:
    """The state a service is in right after an event of ``kind``, and whether it is ready."""
    from tts_ops.backend import State

    states = {"started": State.STARTING, "restarted": State.STARTING, "ready": State.RUNNING,
              "healthy": State.RUNNING, "unhealthy": State.UNHEALTHY,
              "stopping": State.STOPPING, "stopped": State.STOPPED, "exited": State.STOPPED,
              "failed": State.FAILED}
    return states.get(kind, State.STOPPED), kind in ("ready", "healthy", "unhealthy")


@dataclass
class ServiceEvent:
    """One backend event, placed: ``service`` is the configured service, ``instance`` the
    generation's record id (``tts@green``), ``process`` the config of what had it."""

    backend: str
    event: Any             # tts_ops.backend.BackendEvent
    service: str
    instance: str
    process: Any | None

    def as_json(self) -> dict[str, Any]:
        return {"backend": self.backend, **self.event.to_json(), "service": self.service,
                "instance": self.instance}

    def describe(self) -> str:
        event = self.event
        detail = event.reason or (f"exit {event.exit_code}" if event.exit_code is not None
                                  else f"signal {event.exit_signal}" if event.exit_signal
                                  else "")
        where = f" ({self.instance.split('@', 1)[1]})" if "@" in self.instance else ""
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.ts))
        return (f"{when} {self.service}{where} {event.kind}"
                f"{f' pid {event.pid}' if event.pid else ''}"
                f"{f' ({detail})' if detail else ''}")


class EventFeed:
    """The events of ``configured`` services from every backend at once, oldest first per
    backend; with ``follow``, new ones as they come until `close` (or ``for_seconds``)."""

    def __init__(self, rt: Runtime, configured: list[Any], pm: str | None, *, follow: bool,
                 last: int | None, for_seconds: float | None = None) -> None:
        from tts_ops.contracts import EventSource

        self.rt = rt
        processes = every_process(rt, configured)
        self.by_name = {svc.name: svc for svc in processes}
        self._out: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._stop = threading.Event()
        sources = []
        for name, group in rt.by_backend(processes, pm).items():
            backend = rt.backend(name)
            if not isinstance(backend, EventSource):
                raise OperationFailed(f"the {name} backend does not report events")
            sources.append((name, backend, group))
        if for_seconds is not None:
            timer = threading.Timer(for_seconds, self._stop.set)
            timer.daemon = True
            timer.start()
        self._running = len(sources)
        for source in sources:
            threading.Thread(target=self.pump, args=(*source, follow, last),
                             daemon=True).start()

    def pump(self, name: str, backend: Any, group: list[Any], follow: bool,
              last: int | None) -> None:
        try:
            for event in backend.events(group, follow=follow, last=last,
                                        stop=self._stop.is_set):
                self._out.put((name, event))
        finally:
            self._out.put((name, None))

    @property
    def done(self) -> bool:
        return self._running == 0

    def next(self, timeout: float) -> ServiceEvent | None:
        """The next event, or None when none came within ``timeout`` (or a source ended)."""
        try:
            backend_name, event = self._out.get(timeout=timeout)
        except queue.Empty:
            return None
        if event is None:
            self._running -= 1
            return None
        svc = self.by_name.get(event.service)
        # under the service's name, whichever generation had it: the slot is a field
        return ServiceEvent(backend_name, event,
                            svc.owner if svc is not None else event.service,
                            svc.instance_id if svc is not None else event.service, svc)

    def close(self) -> None:
        self._stop.set()


def dispatch(rt: Runtime, placed: ServiceEvent) -> None:
    """Pass a new event to the plugins' hooks, with the process as it runs now (a deploy
    since the follow began chose its slots' ports)."""
    from tts_ops.backend import EVENT_HOOKS, ServiceStatus

    svc, event, backend_name = placed.process, placed.event, placed.backend
    if svc is None:
        return
    configured = rt.config.get(svc.owner)
    if configured is not None:
        svc = next((s for s in rt.runtime([configured]) if s.name == svc.name), svc)
    hook = EVENT_HOOKS.get(event.kind)
    if hook is not None:
        state, ready = state_after(event.kind)
        status = ServiceStatus(name=svc.name, backend=backend_name, state=state, ready=ready,
                               pid=event.pid, restarts=event.restarts,
                               exit_code=event.exit_code, exit_signal=event.exit_signal,
                               reason=event.reason, host=svc.host, port=svc.port)
        rt.host.emit(hook, service=svc, backend=backend_name, status=status,
                     reason=event.reason or event.kind, exit_code=event.exit_code,
                     exit_signal=event.exit_signal)
    if event.kind in ("unhealthy", "healthy"):
        old, new = ("passing", "critical") if event.kind == "unhealthy" else (
            "critical", "passing")
        rt.host.emit("tts_ops_service_health_changed", service=svc, instance=svc.name,
                     old=old, new=new, detail=event.reason or "")
