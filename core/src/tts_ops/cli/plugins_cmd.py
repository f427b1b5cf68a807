"""``tts-ops plugins`` and ``tts-ops backends``: what is installed and what it can do."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.pass_obj
def plugins(app, as_json: bool) -> None:
    """List loaded plugins with their distribution, hooks and registrations."""
    infos = app.host.plugin_infos()
    rows = [
        {
            "name": i.name,
            "distribution": i.distribution,
            "version": i.version,
            "hooks": i.hooks,
            "registers": i.registers,
        }
        for i in infos
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        dist = f"{row['distribution']} {row['version']}" if row["distribution"] else "(in process)"
        click.echo(f"{row['name']}  [{dist}]")
        for kind, names in row["registers"].items():
            click.echo(f"  registers {kind}: {', '.join(names)}")
        if row["hooks"]:
            click.echo(f"  hooks: {', '.join(row['hooks'])}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.pass_obj
def backends(app, as_json: bool) -> None:
    """List process backends and how each supports every capability."""
    from tts_ops.backend import CAPABILITIES

    rows = []
    for name in app.host.registrations("backend").names():
        reg = app.host.registrations("backend").get(name)
        backend = app.backend(name)
        ok, why = backend.available()
        caps = backend.capabilities()
        rows.append(
            {
                "name": name,
                "plugin": reg.plugin,
                "available": ok,
                "reason": why,
                "capabilities": {c: str(caps.get(c, "unsupported")) for c in CAPABILITIES},
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        from tts_ops.hints import install_hint

        click.echo("no process backend installed; install one with:"
                   f" {install_hint('tts-ops-manual')}")
        return
    width = max(len(c) for c in CAPABILITIES)
    for row in rows:
        mark = "available" if row["available"] else "unavailable"
        click.echo(f"{row['name']} ({row['plugin']}): {mark}: {row['reason']}")
        for cap, support in row["capabilities"].items():
            click.echo(f"  {cap:<{width}}  {support}")
