"""``tts-ops events``: print the services' lifecycle events and, following, pass each new
one to the plugins' hooks (the work is `tts_ops.runtime.events`'s; this is its shell)."""

from __future__ import annotations

import json

import click

from tts_ops.cli import completion
from tts_ops.cli.service_cmd import backend_options


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

    from tts_ops.cli.pipes import following
    from tts_ops.readergone import output_gone
    from tts_ops.runtime.events import EventFeed, dispatch

    since = time.time()
    feed = EventFeed(app, app.services(names, not names), pm, follow=follow, last=last,
                     for_seconds=for_seconds)
    try:
        with following(sigterm=follow):
            while not feed.done:
                placed = feed.next(timeout=0.5)
                if placed is None:
                    if output_gone():  # | head: the reader left while nothing happened
                        feed.close()
                        raise BrokenPipeError from None
                    continue
                click.echo(json.dumps(placed.as_json()) if as_json else placed.describe())
                if follow and placed.event.ts >= since:  # history: printed, never dispatched
                    dispatch(app, placed)
    finally:
        feed.close()
