"""Shell completion on click's own machinery (``_TTS_OPS_COMPLETE``): service names from
the config, strategies and process managers from the registered plugins, release ids from
the state, and ``tts-ops completion bash|zsh|fish`` to print the script.

Completion runs without the group's callback, so each function builds the `Runtime` from the
options already typed (``-c``, ``--state-dir``, also after the subcommand) and never fails:
anything that goes wrong completes nothing.
"""

from __future__ import annotations

import os
from typing import Any

import click
from click.shell_completion import CompletionItem

SHELLS = ("bash", "zsh", "fish")


def _app(ctx: click.Context) -> Any:
    from tts_ops.runtime import Runtime as App

    params: dict[str, Any] = {}
    current: click.Context | None = ctx
    while current is not None:  # the subcommand's own -c wins over the group's
        for key, value in current.params.items():
            params.setdefault(key, value)
        current = current.parent
    return App(config_path=params.get("config_path"), state_dir=params.get("state_dir"))


def _matching(values: list[str], incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(v) for v in values if v.startswith(incomplete)]


def service_names(ctx: click.Context, _param: click.Parameter,
                  incomplete: str) -> list[CompletionItem]:
    try:
        names = _app(ctx).config.names()
    except Exception:
        return []
    typed = set(ctx.params.get("names") or ())
    return _matching([n for n in names if n not in typed], incomplete)


def _registered(kind: str, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
    try:
        names = _app(ctx).host.registrations(kind).names()
    except Exception:
        return []
    return _matching(sorted(names), incomplete)


def strategies(ctx: click.Context, _param: click.Parameter,
               incomplete: str) -> list[CompletionItem]:
    return _registered("strategy", ctx, incomplete)


def process_managers(ctx: click.Context, _param: click.Parameter,
                     incomplete: str) -> list[CompletionItem]:
    return _matching(["auto"], incomplete) + _registered("backend", ctx, incomplete)


def release_ids(ctx: click.Context, _param: click.Parameter,
                incomplete: str) -> list[CompletionItem]:
    try:
        from tts_ops.deploy.releases import ReleaseStore

        app = _app(ctx)
        names = [ctx.params["name"]] if ctx.params.get("name") else app.config.names()
        # one that failed its deploy never served: nothing to go back to
        ids = [r.id for n in names for r in ReleaseStore(app.state_dir, n).all()
               if r.state != "failed"]
    except Exception:
        return []
    return _matching(ids, incomplete)


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the completion script for SHELL.

    \b
    bash:  eval "$(tts-ops completion bash)"    (e.g. in ~/.bashrc)
    zsh:   eval "$(tts-ops completion zsh)"     (e.g. in ~/.zshrc)
    fish:  tts-ops completion fish > ~/.config/fish/completions/tts-ops.fish
    """
    from click.shell_completion import get_completion_class

    root = click.get_current_context().find_root()
    cls = get_completion_class(shell)
    assert cls is not None
    os.environ.pop("_TTS_OPS_COMPLETE", None)
    click.echo(cls(root.command, {}, "tts-ops", "_TTS_OPS_COMPLETE").source())
