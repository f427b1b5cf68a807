"""``tts-ops events``: follow the backends' lifecycle events and dispatch them to the hooks.

Restarts, crashes and failures happen inside process managers, not in the CLI; this is
the bridge that lets plugins (discovery, alerting) see them for every backend.
"""

from __future__ import annotations

import json
import queue
import threading
from typing import TYPE_CHECKING, Any

import click

from tts_ops.cli import completion
from tts_ops.cli.service_cmd import backend_options
from tts_ops.errors import OperationFailed

if TYPE_CHECKING:
    from tts_ops.runtime.core import Runtime


def _every_process(app: Runtime, configured: list[Any]) -> list[Any]:
    """Every name the services have run under or may run under: the plain service, each
    generation's slots and the router (a deploy moves a service from one to the other
    while ``events -f`` runs), and what runs now (a deploy under way)."""
    from tts_ops.deploy.slots import slot_services

    every: dict[str, Any] = {}
    for svc in configured:
        # what runs first: its slots' real addresses go into the hooks' statuses; the
        # others only name where events may come from (no port is chosen for them)
        unused = [1] * svc.instances
        for one in [*app.runtime([svc]), svc,
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



@click.command()
@click.argument("names", nargs=-1, shell_complete=completion.service_names)
@click.option("-f", "--follow", is_flag=True, help="Keep waiting for new events.")
@click.option("-n", "--last", type=click.IntRange(min=0), default=None,
              help="Only the newest N events already recorded.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines.")
@click.option("--for", "for_seconds", type=click.FloatRange(min=0), default=None,
              metavar="SECONDS", help="With -f: stop following after this long.")
@backend_options
@click.pass_obj
def events(app, names, follow: bool, last: int | None, as_json: bool, for_seconds: float | None,
           pm: str | None) -> None:
    """Print service lifecycle events; with -f, pass each new one to the plugins' hooks.

    Events already recorded are only printed: they were dispatched when they happened, and
    a paging plugin must not page again because someone read the history.
    """
    import time

    from tts_ops.backend import EVENT_HOOKS, ServiceStatus
    from tts_ops.contracts import EventSource

    since = time.time()

    services = _every_process(app, app.services(names, not names))
    by_name = {svc.name: svc for svc in services}
    sources = []
    for name, group in app.by_backend(services, pm).items():
        backend = app.backend(name)
        if not isinstance(backend, EventSource):
            raise OperationFailed(f"the {name} backend does not report events")
        sources.append((name, backend, group))

    out: queue.Queue = queue.Queue()
    stop = threading.Event()

    def pump(name, backend, group) -> None:
        try:
            for event in backend.events(group, follow=follow, last=last, stop=stop.is_set):
                out.put((name, event))
        finally:
            out.put((name, None))

    if for_seconds is not None:
        timer = threading.Timer(for_seconds, stop.set)
        timer.daemon = True
        timer.start()
    threads = [threading.Thread(target=pump, args=src, daemon=True) for src in sources]
    for t in threads:
        t.start()
    running = len(threads)

    def handle(backend_name: str, event: Any) -> None:
        svc = by_name.get(event.service)
        # under the service's name, whichever generation had it: the slot is a field
        owner = svc.owner if svc is not None else event.service
        instance = svc.instance_id if svc is not None else event.service
        if as_json:
            click.echo(json.dumps({"backend": backend_name, **event.to_json(),
                                   "service": owner, "instance": instance}))
        else:
            detail = event.reason or (f"exit {event.exit_code}" if event.exit_code is not None
                                      else f"signal {event.exit_signal}"
                                      if event.exit_signal else "")
            where = f" ({instance.split('@', 1)[1]})" if "@" in instance else ""
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.ts))
            click.echo(f"{when} {owner}{where} {event.kind}"
                       f"{f' pid {event.pid}' if event.pid else ''}"
                       f"{f' ({detail})' if detail else ''}")
        if svc is None or not follow or event.ts < since:
            return  # history: printed, never dispatched again
        # as it runs now (a deploy since the follow began chose its slots' ports)
        configured = app.config.get(svc.owner)
        if configured is not None:
            svc = next((s for s in app.runtime([configured]) if s.name == svc.name), svc)
        hook = EVENT_HOOKS.get(event.kind)
        if hook is not None:
            state, ready = state_after(event.kind)
            status = ServiceStatus(name=svc.name, backend=backend_name, state=state,
                                   ready=ready, pid=event.pid,
                                   restarts=event.restarts, exit_code=event.exit_code,
                                   exit_signal=event.exit_signal, reason=event.reason,
                                   host=svc.host, port=svc.port)
            app.host.emit(hook, service=svc, backend=backend_name, status=status,
                          reason=event.reason or event.kind, exit_code=event.exit_code,
                          exit_signal=event.exit_signal)
        if event.kind in ("unhealthy", "healthy"):
            old, new = ("passing", "critical") if event.kind == "unhealthy" else (
                "critical", "passing")
            app.host.emit("tts_ops_service_health_changed", service=svc,
                          instance=svc.name, old=old, new=new, detail=event.reason or "")

    from tts_ops.cli.pipes import following, output_gone

    try:
        with following(sigterm=follow):
            while running:
                try:
                    backend_name, event = out.get(timeout=0.5)
                except queue.Empty:
                    if output_gone():  # | head: the reader left while nothing happened
                        stop.set()
                        raise BrokenPipeError from None
                    continue
                if event is None:
                    running -= 1
                    continue
                handle(backend_name, event)
    finally:
        stop.set()
