"""``tts-ops logs NAME [-n N] [-f]``: tail and follow a service's output on any backend."""

from __future__ import annotations

import click

from tts_ops.cli.service_cmd import backend_options


def add_commands(cli: click.Group) -> None:
    cli.add_command(logs)


@click.command()
@click.argument("name")
@click.option("-n", "--lines", default=50, show_default=True, type=click.IntRange(min=0),
              help="How many of the last lines to show.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@backend_options
@click.pass_obj
def logs(app, name: str, lines: int, follow: bool, pm: str | None) -> None:
    """Show the last lines of a service's log, and follow it with -f."""
    svc = app.runtime(app.services((name,), False))[0]
    backend = app.backend(app.choose_backend(svc, pm))
    try:
        for line in backend.logs(svc, lines, follow):
            click.echo(line)
    except KeyboardInterrupt:
        pass
