"""``docs/cli.md``: every ``tts-ops`` command's ``--help``, generated from the click commands.

``python -m tts_ops.cli.reference > docs/cli.md`` writes it; a test keeps it current.
"""

from __future__ import annotations

import click

WIDTH = 96


def _walk(command: click.Command, path: list[str], parent: click.Context | None):
    settings = {**command.context_settings, "terminal_width": WIDTH, "max_content_width": WIDTH}
    ctx = click.Context(command, info_name=path[-1], parent=parent, **settings)
    yield path, ctx
    if isinstance(command, click.Group):
        for name in sorted(command.list_commands(ctx)):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from _walk(sub, [*path, name], ctx)


def render(cli: click.Command) -> str:
    out = ["# Command reference", "",
           "Every command's `--help`, generated from the code"
           " (`python -m tts_ops.cli.reference > docs/cli.md`; a test keeps it current).",
           "Installed plugins may add commands of their own.", ""]
    entries = list(_walk(cli, ["tts-ops"], None))
    out += [f"- [`{' '.join(path)}`](#{'-'.join(path)})" for path, _ctx in entries]
    for path, ctx in entries:
        out += ["", f'<a id="{"-".join(path)}"></a>', f"## {' '.join(path)}", "", "```text",
                ctx.command.get_help(ctx).rstrip(), "```"]
    return "\n".join(out) + "\n"


def main() -> None:
    from tts_ops.cli import create_cli

    click.echo(render(create_cli()), nl=False)


if __name__ == "__main__":
    main()
