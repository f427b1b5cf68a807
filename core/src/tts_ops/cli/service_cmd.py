"""Service lifecycle commands: start, stop, restart, status, install, uninstall, enable, disable.

Several services are acted on in parallel. Exit 1 if any of them failed.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import click

from tts_ops.cli import completion
from tts_ops.errors import MissingComponent, OperationFailed, TtsOpsError
from tts_ops.runtime.address import address_of


def backend_options(f):
    """``--process-manager``; the flags backends register (``tts_ops_register_options``:
    systemd's ``--scope``, supervisor's ``--supervisor-conf``) are added to every command
    that has it when the command is built."""
    return click.option(
        "--process-manager", "pm", default=None, metavar="auto|manual|systemd|supervisor",
        shell_complete=completion.process_managers,
        help="Process backend (any installed backend name). Default: the service's"
        " process_manager, the one it was started with, else auto-detect.",
    )(f)



def _names(f):
    f = click.option("--all", "all_", is_flag=True, help="Every service in the config.")(f)
    return click.argument("names", nargs=-1, shell_complete=completion.service_names)(f)


def _run_each(app, services, pm: str | None, action: str, **kwargs: Any) -> list[Any]:
    """Run ``action`` on each service's backend in parallel; report failures; exit 1 if any."""
    import threading

    from tts_ops.backend import BackendUnavailable, StartFailed

    plan = [(svc, app.choose_backend(svc, pm)) for svc in services]
    # resolve every backend first so a missing plugin fails before anything is touched
    for _svc, name in plan:
        app.backend(name)

    def one(item):
        svc, name = item
        backend = app.backend(name)
        if action in ("start", "restart", "install"):
            app.record_backend(svc.name, name)
        try:
            return svc, getattr(backend, action)(svc, **kwargs), None
        except StartFailed as exc:
            return svc, None, exc
        except BackendUnavailable as exc:
            return svc, None, MissingComponent(f"{svc.name}: {name}: {exc}")
        except TtsOpsError as exc:
            return svc, None, exc

    # a thread each (not concurrent.futures: it and the logging it imports cost every stop
    # about 8 ms); one service alone runs here
    results: list[Any] = [None] * len(plan)
    crashed: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = one(plan[i])
        except BaseException as exc:  # a bug: raised again below, with its traceback
            crashed.append(exc)

    # not daemons: an interrupted command still waits for the actions under way at exit
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(plan))]
    if len(threads) == 1:
        run(0)
    else:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if crashed:
        raise crashed[0]
    failures = [(svc, exc) for svc, _res, exc in results if exc is not None]
    for svc, exc in failures:
        if isinstance(exc, StartFailed):
            click.echo(f"tts-ops: error: {svc.name}: {exc.reason}", err=True)
            if exc.log_tail:
                click.echo(f"  last {len(exc.log_tail)} log lines of {svc.name}:", err=True)
                for line in exc.log_tail:
                    click.echo(f"  | {line}", err=True)
    if failures:
        handled = [e for _s, e in failures if isinstance(e, TtsOpsError)]
        said = [e for e in handled if not isinstance(e, StartFailed)]  # not printed yet
        if len(failures) == 1 and said:
            raise said[0]
        for err in said:
            click.echo(f"tts-ops: error: {err.message}", err=True)
        code = max((e.exit_code for e in handled), default=1)
        raise SystemExit(code)
    return [res for _svc, res, _exc in results]


@click.command()
@_names
@backend_options
@click.option("--json", "as_json", is_flag=True, help="Print the statuses as status --json.")
@click.pass_obj
def start(app, names, all_, pm, as_json) -> None:
    """Start services; return when each is ready (exit 1 if one is not)."""
    app.require_valid()
    configured = app.services(names, all_)
    app.recover_deploys([s.name for s in configured])
    app.record_intent(configured, "running")
    routed = [svc for svc in configured if svc.router]
    if routed:
        from tts_ops.routing import prepare_start

        for svc in routed:
            prepare_start(app, svc, pm)
    services = app.runtime(configured)
    app.check_node(services)
    try:
        started = _run_each(app, services, pm, "start")
        if routed:
            from tts_ops.routing import finish_start

            for svc in routed:
                finish_start(app, svc)
    except BaseException:
        # an address held for a service that did not come up would take connections that
        # nobody answers: let it go, unless a generation of the service still runs
        for svc in configured:
            with contextlib.suppress(Exception):  # the start's own error is the one to show
                if not _any_running(app, svc, pm):
                    app.release_addresses([svc], pm)
        raise
    if as_json:
        click.echo(json.dumps(_rows_json(started, services), indent=2))
        return
    for st in started:
        extra = f" pid {st.pid}" if st.pid else ""
        click.echo(f"{st.name}: {st.state} ({st.backend}){extra}")


@click.command()
@_names
@backend_options
@click.option("--force", is_flag=True, help="Skip the graceful wait: SIGKILL at once.")
@click.option("--json", "as_json", is_flag=True, help="Print the statuses as status --json.")
@click.pass_obj
def stop(app, names, all_, pm, force, as_json) -> None:
    """Stop services; return when no process of them is left."""
    configured = app.services(names, all_)
    app.record_intent(configured, "stopped")  # first: a monitor must not race the stop
    app.recover_deploys([s.name for s in configured])
    services = app.runtime(configured)
    stopped = _run_each(app, services, pm, "stop", force=force)
    app.release_addresses(configured, pm, every=all_)
    if as_json:
        click.echo(json.dumps(_rows_json(stopped, services), indent=2))
        return
    for st in stopped:
        click.echo(f"{st.name}: {st.state} ({st.backend})")


@click.command()
@_names
@backend_options
@click.option("--json", "as_json", is_flag=True, help="Print the statuses as status --json.")
@click.pass_obj
def restart(app, names, all_, pm, as_json) -> None:
    """Restart services; return when each is ready again (`reload` is the same command).

    A service whose address tts-ops holds (``socket: inherit``, the reference server) is
    restarted without downtime: a new generation starts on the same socket, is verified,
    and the old one drains and stops (a blue_green deploy of the running release, in
    `deploy history`). Any other service is stopped and started by its backend.
    """
    app.require_valid()
    configured = app.services(names, all_)
    app.recover_deploys([s.name for s in configured])
    app.record_intent(configured, "running")
    seamless = [svc for svc in configured if (svc.socket_mode == "inherit" or svc.router)
                and _any_running(app, svc, pm)]
    others = [svc for svc in configured if svc not in seamless]
    done: list[Any] = []
    if others:
        done += _run_each(app, app.runtime(others), pm, "restart")
    if seamless:
        from tts_ops.deploy.engine import DeployEngine, Reporter
        from tts_ops.deploy.releases import ReleaseStore

        engine = DeployEngine(app, Reporter(False, lambda line: None, watch_output=False))
        for svc in seamless:
            current = ReleaseStore(app.state_dir, svc.name).current()
            engine.deploy(svc, strategy=None, pm=pm, release=current, kind="restart",
                          environment=current.environment if current else
                          engine.environment(None))
            done += app.statuses(app.runtime([svc]), pm)
    if as_json:
        click.echo(json.dumps(_rows_json(done, app.runtime(configured)), indent=2))
        return
    for st in done:
        click.echo(f"{st.name}: {st.state} ({st.backend}) pid {st.pid}")


def _rows_json(rows: list[Any], services: list[Any]) -> list[dict[str, Any]]:
    """Status rows as ``--json`` prints them: each with the configured service it runs
    for (a slot's is its service), the release it runs, and the address its clients use
    (``address``: a slot's is its service's; ``host``/``port`` stay the process's own)."""
    from tts_ops.deploy.slots import RELEASE_LABEL

    by_name = {svc.name: svc for svc in services}
    out = []
    for row in rows:
        svc = by_name.get(row.name)
        out.append({**row.to_json(), "service": svc.owner if svc else row.name,
                    "release": svc.labels.get(RELEASE_LABEL) if svc else None,
                    "address": address_of(svc) if svc else None})
    return out


def _any_running(app, svc, pm) -> bool:
    return any(str(st.state) in ("running", "unhealthy", "starting", "backoff")
               for st in app.statuses(app.runtime([svc]), pm))


@click.command()
@click.argument("names", nargs=-1, shell_complete=completion.service_names)
@backend_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.option("--watch", is_flag=True,
              help="Print it again every --interval seconds until Ctrl-C (with --json: one"
                   " JSON list per line).")
@click.option("--interval", type=click.FloatRange(0.1, 3600), default=1.0, show_default=True)
@click.pass_obj
def status(app, names, pm, as_json, watch, interval) -> None:
    """Show state, pid, readiness, uptime, restarts, cpu and rss of services."""
    if not watch:
        _status_once(app, names, pm, as_json)
        return
    import time

    from tts_ops.cli.pipes import following

    with following():
        while True:
            if not as_json:
                click.echo(time.strftime("--- %Y-%m-%d %H:%M:%S"))
            _status_once(app, names, pm, as_json, compact=True)
            time.sleep(interval)


def _status_once(app, names, pm, as_json: bool, compact: bool = False) -> None:
    services = app.runtime(app.services(names, not names))
    rows = app.statuses(services, pm)
    if as_json:
        click.echo(json.dumps(_rows_json(rows, services), indent=None if compact else 2))
        return
    click.echo(f"{'NAME':<20} {'BACKEND':<10} {'STATE':<10} {'PID':>7} {'READY':<5} "
               f"{'UPTIME':>8} {'RESTARTS':>8} {'CPU':>6} {'RSS':>9}  ADDRESS")
    by_name = {svc.name: svc for svc in services}
    for r in rows:
        uptime = _duration(r.uptime_s) if r.uptime_s is not None else "-"
        addr = f"{r.host}:{r.port}" if r.port else ""
        shared = by_name[r.name].shared_address() if r.name in by_name else None
        if shared is not None and r.port and shared != (r.host, r.port):
            addr = f"{shared[0]}:{shared[1]} (private {r.host}:{r.port})"
        cpu = f"{r.cpu_percent:.1f}%" if r.cpu_percent is not None else "-"
        rss = _bytes(r.rss_bytes) if r.rss_bytes is not None else "-"
        click.echo(f"{r.name:<20} {r.backend:<10} {r.state!s:<10} {r.pid or '-':>7} "
                   f"{'yes' if r.ready else 'no':<5} {uptime:>8} {r.restarts:>8} {cpu:>6}"
                   f" {rss:>9}  {addr}")
        if r.reason and (r.state in ("failed", "backoff", "unhealthy")
                         or (r.extra or {}).get("degraded")):
            click.echo(f"{'':<20} {r.reason}")
    if app.verbose:
        for svc in services:
            click.echo(f"{svc.name}: backend from {app.backend_reasons.get(svc.name, '?')}")


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}GiB"


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _generations(svc: Any, serving: list[Any]) -> list[Any]:
    """The service under every name a deploy may have given it, but those serving now."""
    from tts_ops.deploy.slots import slot_services

    names = {s.name for s in serving}
    every = [svc, *slot_services(svc, "blue", None, None, 100),
             *slot_services(svc, "green", None, None, 100)]
    return [s for s in every if s.name not in names]


_PAST = {"install": "installed", "uninstall": "uninstalled", "enable": "enabled",
         "disable": "disabled"}


def _one_service_command(action: str, doc: str):
    @click.command(name=action, help=doc)
    @click.argument("names", nargs=-1, required=True, shell_complete=completion.service_names)
    @backend_options
    @click.pass_obj
    def command(app, names, pm) -> None:
        from tts_ops.backend import Support

        if action in ("install", "enable"):
            app.require_valid()
        for svc in app.services(names, False):
            name = app.choose_backend(svc, pm)  # the flag, else the one it was started with
            backend = app.backend(name)
            if backend.capabilities().get("auto_start") == Support.UNSUPPORTED:
                raise OperationFailed(
                    f"{svc.name}: the {name} backend cannot {action} anything (it has no"
                    " boot-time manager to install into): pass --process-manager with one"
                    " that has (tts-ops plugins shows each backend's auto_start)")
            serving = app.runtime([svc])  # after a blue/green deploy: the serving slots
            if action in ("install", "enable"):
                for running in serving:
                    getattr(backend, action)(running)
                if action == "enable":  # an earlier generation must not boot instead
                    for other in _generations(svc, serving):
                        backend.disable(other)
                app.record_backend(svc.name, name)
            else:  # disable, uninstall: every generation there may be
                for unit in [*serving, *_generations(svc, serving)]:
                    getattr(backend, action)(unit)
            click.echo(f"{svc.name}: {_PAST[action]} ({name}:"
                       f" {', '.join(s.name for s in serving)})")

    return command


install = _one_service_command("install", "Install services into a process manager.")
uninstall = _one_service_command("uninstall", "Stop services and remove what install created.")
enable = _one_service_command("enable", "Start services automatically with the process manager.")
disable = _one_service_command("disable", "Stop starting services automatically.")


@click.command()
@click.argument("names", nargs=-1, shell_complete=completion.service_names)
@click.pass_obj
def recover(app, names) -> None:
    """Finish deploys whose process died (SIGKILL, a crash, a power cut).

    A deploy that had switched to its new release is completed; any other is reversed:
    the old release serves again and the new generation stops. `start`, `stop`, `restart`,
    `deploy` and `rollback` do the same for their services; `status`, `events`, `logs`,
    `top` and `web` only say that one is waiting.
    """
    chosen = [s.name for s in app.services(names, not names)] if names else None
    if app.recover_deploys(chosen) == 0:
        click.echo("no interrupted deploy" + (f" of {', '.join(names)}" if names else ""))
