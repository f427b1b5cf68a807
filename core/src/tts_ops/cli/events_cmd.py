"""``tts-ops events``: follow the backends' lifecycle events and dispatch them to the hooks.

Restarts, crashes and failures happen inside process managers, not in the CLI; this is
the bridge that lets plugins (discovery, alerting) see them for every backend.
"""

from __future__ import annotations

import json
import queue
import threading

import click

from tts_ops.cli.service_cmd import backend_options
from tts_ops.errors import OperationFailed


def add_commands(cli: click.Group) -> None:
    cli.add_command(events)


@click.command()
@click.argument("names", nargs=-1)
@click.option("-f", "--follow", is_flag=True, help="Keep waiting for new events.")
@click.option("-n", "--last", type=click.IntRange(min=0), default=None,
              help="Only the newest N events already recorded.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines.")
@backend_options
@click.pass_obj
def events(app, names, follow: bool, last: int | None, as_json: bool, pm: str | None) -> None:
    """Print service lifecycle events and pass each to the plugins' event hooks."""
    from tts_ops.backend import EVENT_HOOKS, ServiceStatus

    services = app.services(names, not names)
    by_name = {svc.name: svc for svc in services}
    groups: dict[str, list] = {}
    for svc in services:
        groups.setdefault(app.choose_backend(svc, pm), []).append(svc)
    sources = []
    for name, group in groups.items():
        backend = app.backend(name)
        if not hasattr(backend, "events"):
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

    threads = [threading.Thread(target=pump, args=src, daemon=True) for src in sources]
    for t in threads:
        t.start()
    running = len(threads)
    try:
        while running:
            backend_name, event = out.get()
            if event is None:
                running -= 1
                continue
            if as_json:
                click.echo(json.dumps({"backend": backend_name, **event.to_json()}))
            else:
                detail = event.reason or (f"exit {event.exit_code}" if event.exit_code is not None
                                          else f"signal {event.exit_signal}"
                                          if event.exit_signal else "")
                click.echo(f"{event.ts:.3f} {event.service} {event.kind}"
                           f"{f' pid {event.pid}' if event.pid else ''}"
                           f"{f' ({detail})' if detail else ''}")
            svc = by_name.get(event.service)
            hook = EVENT_HOOKS.get(event.kind)
            if svc is not None and hook is not None:
                status = ServiceStatus(name=svc.name, backend=backend_name, pid=event.pid,
                                       restarts=event.restarts, exit_code=event.exit_code,
                                       exit_signal=event.exit_signal, reason=event.reason,
                                       host=svc.host, port=svc.port)
                app.host.emit(hook, service=svc, backend=backend_name, status=status,
                              reason=event.reason or event.kind, exit_code=event.exit_code,
                              exit_signal=event.exit_signal)
            if svc is not None and event.kind in ("unhealthy", "healthy"):
                old, new = ("passing", "critical") if event.kind == "unhealthy" else (
                    "critical", "passing")
                app.host.emit("tts_ops_service_health_changed", service=svc,
                              instance=svc.name, old=old, new=new, detail=event.reason or "")
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
