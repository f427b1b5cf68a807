"""``tts-ops router status``: what a routed service's router sees (`tts_ops.routing`)."""

from __future__ import annotations

import json

import click

from tts_ops.cli import completion
from tts_ops.errors import ConfigError


@click.group()
def router() -> None:
    """The routers in front of routed services (``"router": "haproxy"``)."""


@router.command()
@click.argument("names", nargs=-1, shell_complete=completion.service_names)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.pass_obj
def status(app, names, as_json) -> None:
    """Frontend, address and every server: weight, state, check, sessions, requests.

    Exit 1 when a router that should be running cannot be reached.
    """
    services = [s for s in app.services(names, all_=not names) if s.router]
    if not services:
        raise ConfigError("no service has a router: set \"router\": \"haproxy\" on one"
                          " (docs/routers.md)")
    states = [app.router(svc).status(svc) for svc in services]
    if as_json:
        click.echo(json.dumps([s.to_json() for s in states], indent=2))
    else:
        for state in states:
            pid = f", worker pid {state.worker_pid}" if state.worker_pid else ""
            head = (f"{state.service}: {state.router} on {state.address} (frontend"
                    f" {state.frontend}{pid})")
            click.echo(head if state.running else f"{head}: not running: {state.detail}")
            if not state.running:
                continue
            if not state.servers:
                click.echo("  no servers")
                continue
            click.echo(f"  {'SERVER':<12} {'ADDRESS':<22} {'WEIGHT':>6} {'STATE':<10}"
                       f" {'CHECK':<8} {'SESSIONS':>8} {'REQUESTS':>9} {'ERRORS':>6}")
            for s in state.servers:
                click.echo(f"  {s.name:<12} {s.address:<22} {s.weight:>6} {s.state:<10}"
                           f" {s.check:<8} {s.sessions:>8} {s.requests:>9} {s.errors:>6}")
    if any(not s.running for s in states):
        raise SystemExit(1)
