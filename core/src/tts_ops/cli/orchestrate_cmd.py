"""``tts-ops orchestrate plan|start|stop|status|monitor``: services in dependency order."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from tts_ops.cli.service_cmd import backend_options
from tts_ops.errors import OperationFailed


def _orchestration_option(f):
    return click.option(
        "--orchestration", "orch_path", metavar="FILE", envvar="TTS_OPS_ORCHESTRATION",
        help="The seed's orchestration_config.json (default: ./orchestration_config.json if"
        " it exists).")(f)


def _graph(app, orch_path):
    from tts_ops.config.loader import load_orchestration
    from tts_ops.orchestrate.graph import build

    if orch_path is None and Path("orchestration_config.json").exists():
        orch_path = "orchestration_config.json"
    orchestration = load_orchestration(orch_path) if orch_path else None
    source = app.loaded.source + (f" + {orch_path}" if orch_path else "")
    return build(app.config, orchestration, source)


def _orchestrator(app, orch_path, pm, quiet=False):
    from tts_ops.orchestrate.runner import Orchestrator

    log = (lambda m: None) if quiet else (lambda m: click.echo(f"  {m}", err=True))
    return Orchestrator(app, _graph(app, orch_path), pm, log)


@click.group()
def orchestrate() -> None:
    """Start and stop services in dependency order; watch them (the seed's orchestrator)."""


@orchestrate.command()
@_orchestration_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def plan(app, orch_path, as_json) -> None:
    """Print the phases and each dependency's condition, without acting."""
    graph = _graph(app, orch_path)
    if as_json:
        click.echo(json.dumps({"phases": graph.phases, "edges": [e.__dict__
                                                                 for e in graph.edges]},
                              indent=2))
        return
    for i, phase in enumerate(graph.phases):
        click.echo(f"phase {i + 1}: {', '.join(phase)}")
        for name in phase:
            for e in graph.deps_of(name):
                target = f"{e.dependency} <{e.url}>" if e.external else e.dependency
                if e.required:
                    click.echo(f"  {name} waits for {target}: {e.condition}, required, up to"
                               f" {e.timeout:g}s")
                else:  # looked at once when it starts, never waited for
                    click.echo(f"  {name} looks at {target} once: {e.condition}, optional,"
                               " never waited for")


@orchestrate.command()
@_orchestration_option
@backend_options
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def start(app, orch_path, pm, as_json) -> None:
    """Start every service phase by phase; a service starts once its dependencies are met."""
    app.require_valid()
    orch = _orchestrator(app, orch_path, pm, quiet=as_json)
    app.record_intent(list(orch.graph.services.values()), "running")
    outcomes = orch.start()
    if as_json:
        click.echo(json.dumps([o.to_json() for o in outcomes], indent=2))
    else:
        for o in outcomes:
            click.echo(f"phase {o.phase + 1}  {o.service:<20} {o.result}"
                       + (f": {o.detail}" if o.detail else ""))
            for w in o.warnings:
                click.echo(f"{'':<9}warning: {w}")
    bad = [o.service for o in outcomes if o.result in ("failed", "blocked")]
    if bad:
        raise OperationFailed(f"not started: {', '.join(bad)} (see the report above)")


@orchestrate.command()
@_orchestration_option
@backend_options
@click.pass_obj
def stop(app, orch_path, pm) -> None:
    """Stop every service in reverse phase order."""
    orch = _orchestrator(app, orch_path, pm)
    app.record_intent(list(orch.graph.services.values()), "stopped")
    for name, result in orch.stop():
        click.echo(f"{name}: {result}")


@orchestrate.command()
@_orchestration_option
@backend_options
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def status(app, orch_path, pm, as_json) -> None:
    """The graph with each node's state and health, and what a phase is blocked on."""
    data = _orchestrator(app, orch_path, pm, quiet=True).status()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for node in data["nodes"]:
        deps = f"  <- {', '.join(node['depends_on'])}" if node["depends_on"] else ""
        click.echo(f"phase {node['phase']}  {node['service']:<20} {node['state']:<9}"
                   f" health {node['health']:<8}{deps}")
        for b in node["blocked_on"]:
            click.echo(f"{'':<10}blocked on {b}")
    for ext in data["external"]:
        click.echo(f"external {ext['dependency']} <{ext['url']}>: {ext['health']}"
                   f" ({ext['detail']})")


@orchestrate.command()
@_orchestration_option
@backend_options
@click.option("--interval", type=click.FloatRange(min=0.1), default=5.0, show_default=True)
@click.option("--once", is_flag=True, help="One round, then exit.")
@click.option("--daemon", is_flag=True,
              help="Detach into the background (log and pid file in the state dir).")
@click.pass_obj
def monitor(app, orch_path, pm, interval, once, daemon) -> None:
    """Keep services up in dependency order; speaks the notify protocol (Type=notify)."""
    orch = _orchestrator(app, orch_path, pm)
    if daemon:
        _daemonize(app.state_dir)
        click.echo = _stamped_echo  # type: ignore[assignment]
    orch.log = lambda m: click.echo(m, err=True)
    orch.monitor(interval=interval, once=once)


def _stamped_echo(message=None, err=False, **_kw):  # pragma: no cover - daemon output
    import time

    stream = sys.stderr if err else sys.stdout
    stream.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}\n")
    stream.flush()


def _daemonize(state_dir: Path) -> None:
    """Fork into the background: new session, output to <state>/orchestrator.log."""
    from tts_ops.config.paths import ensure_writable_dir
    from tts_ops.statefile import atomic_write_bytes, open_nofollow

    ensure_writable_dir(state_dir)
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    log = open_nofollow(state_dir / "orchestrator.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                        0o640)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    atomic_write_bytes(state_dir / "orchestrator.pid", f"{os.getpid()}\n".encode())
