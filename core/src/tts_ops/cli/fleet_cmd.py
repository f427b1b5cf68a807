"""``tts-ops fleet``: status, deploy, rollback, restart, start, stop and run on every host
of the config's ``fleet`` section, from this machine, over SSH: a shell over
`tts_ops.fleet.operate.Fleet`, whose events it prints as text or JSON lines.

Each command sends each host its config (`tts_ops.fleet.inventory.host_config`) and runs
``tts-ops fleet receive -- COMMAND`` there in the same ssh round trip. ``receive`` is the
host's side: it validates what it got, keeps it in its state dir and runs the command.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from tts_ops.errors import ConfigError

#: a config larger than this is not a config: ``receive`` refuses it unread
MAX_CONFIG = 16 * 1024 * 1024

#: a host's own steps, said as ``HOST: message``
_STEPS = ("running", "skipped", "ok", "failed", "undoing")


@click.group()
def fleet() -> None:
    """Operate every host of the config's fleet section over SSH."""


def _fleet(app: Any) -> Any:
    from tts_ops.fleet.operate import Fleet

    return Fleet(app)


def _printer(as_json: bool) -> Any:
    """What prints a `Fleet`'s events: JSON lines, or a line of text each."""
    def report(event: dict[str, Any]) -> None:
        click.echo(json.dumps(event) if as_json else _text(event))

    return report


def _text(event: dict[str, Any]) -> str:
    host, kind = event["fleet_host"], event.get("event")
    if kind in _STEPS:
        return f"{host}: {event.get('message')}"
    if kind == "output":
        return f"{host}:   {event.get('line')}"
    if kind == "releases":
        return f"{host}: runs {event.get('current')}"
    return f"{host}:   {_rendered(event)}"


_host_option = click.option("--host", "host_names", multiple=True, metavar="NAME",
                            help="Only this host of the fleet (repeatable).")


@fleet.command()
@_host_option
@click.option("--json", "as_json", is_flag=True, help="One JSON list: status --json rows"
              " with fleet_host (and error for a host that could not be read).")
@click.pass_obj
def status(app, host_names, as_json) -> None:
    """Every host's processes in one table, asked in parallel."""
    ops = _fleet(app)
    rows = ops.status(ops.hosts(host_names))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        _table(rows)
    if any("error" in row for row in rows):
        sys.exit(1)


def _table(rows: list[dict[str, Any]]) -> None:
    header = ("HOST", "NAME", "STATE", "PID", "RELEASE", "RESTARTS")
    lines = [header]
    for row in rows:
        if "error" in row:
            lines.append((row["fleet_host"], "-", "unreachable", "-", "-", "-"))
            continue
        release = row.get("release") or "-"
        lines.append((row["fleet_host"], row.get("name", "?"), row.get("state", "?"),
                      str(row.get("pid") or "-"), str(release), str(row.get("restarts", 0))))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    for line in lines:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True))
                   .rstrip())
    for row in rows:
        if "error" in row:
            click.echo(f"tts-ops: error: {row['error']}", err=True)


def _rendered(event: dict[str, Any]) -> str:
    """One deploy event as a line of the fleet's progress."""
    from tts_ops.errors import printable

    kind = event.get("event")
    if kind == "start":
        text = (f"{event.get('operation')} {event.get('id')}: {event.get('service')}"
                f" {event.get('old')} -> {event.get('new')} with {event.get('strategy')}")
    elif kind == "phase":
        text = (f"{'ok  ' if event.get('ok') else 'FAIL'} {event.get('phase')}"
                f" {float(event.get('duration_s') or 0):.2f}s")
    elif kind == "weights":
        weights = event.get("weights") or {}
        text = "weights " + ", ".join(f"{k}={v}" for k, v in sorted(weights.items()))
    elif kind == "result":
        text = (f"{event.get('service')}: {event.get('result')} release"
                f" {event.get('release')} in {float(event.get('duration_s') or 0):.2f}s"
                + (f" ({event['reason']})" if event.get("reason") else ""))
    elif kind == "log":
        text = f"{event.get('message')}"
    elif kind == "platform":
        p = event.get("platform") or {}
        text = (f"platform: process manager {p.get('process_manager')}, engine"
                f" {p.get('engine', '-')}")
    else:
        text = str(kind)
    return printable(text)


def _one_by_one(app: Any, what: str, args: list[str], host_names: tuple[str, ...],
                parallel: int | None, as_json: bool, undo: list[str] | None = None,
                names: tuple[str, ...] = ()) -> None:
    ops = _fleet(app)
    ops.one_by_one(what, args, ops.hosts(host_names), _printer(as_json), parallel=parallel,
                   undo=undo, names=names)


_parallel = click.option("--parallel", type=click.IntRange(1, 64), default=None,
                         help="Hosts at once (default: fleet.parallel).")
_json = click.option("--json", "as_json", is_flag=True, help="JSON lines.")


@fleet.command()
@click.argument("names", nargs=-1)
@click.option("--strategy", default=None, help="Deploy strategy on every host.")
@_parallel
@_host_option
@click.option("--rollback-on-failure", is_flag=True,
              help="When a host fails, roll back the hosts already deployed.")
@_json
@click.pass_obj
def deploy(app, names, strategy, parallel, host_names, rollback_on_failure, as_json) -> None:
    """Deploy host by host (or --parallel N at a time); stop at the first that fails."""
    args = ["deploy", *names, *(["--strategy", strategy] if strategy else [])]
    _one_by_one(app, "deploy", args, host_names, parallel, as_json,
                undo=["rollback", *names] if rollback_on_failure else None, names=names)


@fleet.command()
@click.argument("names", nargs=-1)
@_parallel
@_host_option
@_json
@click.pass_obj
def rollback(app, names, parallel, host_names, as_json) -> None:
    """Roll back host by host to each one's previous release."""
    _one_by_one(app, "rollback", ["rollback", *names], host_names, parallel, as_json,
                names=names)


@fleet.command()
@click.argument("name")
@_parallel
@_host_option
@_json
@click.pass_obj
def restart(app, name, parallel, host_names, as_json) -> None:
    """Restart a service host by host (each host's restart is zero-downtime)."""
    _one_by_one(app, "restart", ["restart", name], host_names, parallel, as_json,
                names=(name,))


def _start_stop(verb: str):
    @click.argument("names", nargs=-1)
    @click.option("--all", "all_", is_flag=True, help="Every service of the config.")
    @_parallel
    @_host_option
    @_json
    @click.pass_obj
    def command(app, names, all_, parallel, host_names, as_json) -> None:
        if not names and not all_:
            raise ConfigError(f"fleet {verb}: name a service or pass --all")
        _one_by_one(app, verb, [verb, *names, *(["--all"] if all_ else [])], host_names,
                    parallel, as_json)

    command.__doc__ = f"{verb.capitalize()} services on every host."
    return fleet.command(name=verb)(command)


start = _start_stop("start")
stop = _start_stop("stop")


@fleet.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, required=True, type=click.UNPROCESSED)
@_host_option
@_json
@click.pass_obj
def run(app, args, host_names, as_json) -> None:
    """Any tts-ops command on every host at once: fleet run -- logs tts --lines 5."""
    ops = _fleet(app)
    ops.run(ops.hosts(host_names), list(args), _printer(as_json))


@fleet.command(name="receive-source", hidden=True)
@click.option("--name", required=True)
@click.pass_obj
def receive_source(app, name) -> None:
    """A host's side: a service's source tree (tar) on stdin, kept; prints where."""
    from tts_ops.fleet.sources import MAX_SOURCE, keep

    click.echo(str(keep(app.state_dir, name, sys.stdin.buffer.read(MAX_SOURCE + 1))))


@fleet.command(hidden=True, context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def receive(app, args) -> None:
    """A host's side: read a config on stdin, validate it, keep it in the state dir
    (0600, named by its content: two commands at once never read each other's), and run
    ``tts-ops ARGS`` with it."""
    from tts_ops.fleet.received import keep

    data = sys.stdin.buffer.read(MAX_CONFIG + 1)
    path = keep(app.state_dir, data, MAX_CONFIG)
    if not args:
        click.echo(str(path))
        return
    from tts_ops.cli import create_cli

    argv = ["--state-dir", str(app.state_dir), "-c", str(path), *args]
    create_cli().main(args=argv, prog_name="tts-ops")
