"""The ``tts-ops`` command: built by `create_cli` so tests need no module reloads.

Handled errors (`TtsOpsError`) print one line on stderr and exit with their code
(1 failed, 2 bad usage or config, 3 missing backend or plugin); ``--debug`` shows
tracebacks.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from tts_ops import __version__
from tts_ops.errors import MissingComponent, TtsOpsError, printable

_HOST = "tts_ops.host"
#: commands first-party plugins add, to name the plugin when it is not installed
PLUGIN_COMMANDS = {"export": "tts-ops-kubernetes"}


class _Group(click.Group):
    """Turns `TtsOpsError` into one line and an exit code; finds plugins' commands
    (``tts_ops_register_commands``) when a name is not the core's."""

    host_factory: Callable[[], Any] | None = None

    def plugin_host(self, ctx: click.Context) -> Any:
        """The plugin host of this invocation, built once and shared with the `Runtime`."""
        root = ctx.find_root()
        host = root.meta.get(_HOST)
        if host is None:
            if self.host_factory is not None:
                host = self.host_factory()
            else:
                from tts_ops.plugins import PluginHost

                host = PluginHost()
            root.meta[_HOST] = host
        return host

    def _plugin_commands(self, ctx: click.Context) -> Any:
        try:
            return self.plugin_host(ctx).registrations("command")
        except TtsOpsError as exc:
            click.echo(f"tts-ops: warning: plugin commands unavailable: {exc.message}", err=True)
            return None

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            if _takes_backend_flags(command):
                return self._with_backend_flags(ctx, command)
            return command
        register = self._plugin_commands(ctx)
        found = register.get(cmd_name) if register is not None else None
        if found is None:
            if cmd_name in PLUGIN_COMMANDS:  # a documented command whose plugin is missing
                from tts_ops.hints import install_hint

                dist = PLUGIN_COMMANDS[cmd_name]
                raise MissingComponent(f"'tts-ops {cmd_name}' comes with {dist}; install it"
                                       f" with: {install_hint(dist)}")
            return None
        try:
            command = found.factory()
        except Exception as exc:  # a broken plugin must not take the CLI down
            click.echo(f"tts-ops: warning: plugin {found.plugin!r} could not build its command"
                       f" {cmd_name!r}: {exc}", err=True)
            return None
        if not isinstance(command, click.Command):
            click.echo(f"tts-ops: warning: plugin {found.plugin!r} registered {cmd_name!r},"
                       " which is not a click command", err=True)
            return None
        command.name = cmd_name
        _share_options(command)
        return command

    def _with_backend_flags(self, ctx: click.Context, command: click.Command) -> click.Command:
        """``command`` with the flags backends registered on every leaf that takes
        ``--process-manager`` (a copy: the core's command objects are shared between
        invocations with other plugins); each value goes to
        ``App.backend_options[backend][key]``."""
        try:
            register = self.plugin_host(ctx).registrations("option")
        except TtsOpsError as exc:
            click.echo(f"tts-ops: warning: backend flags unavailable: {exc.message}", err=True)
            return command
        flags = []
        for name in register.names():
            found = register.get(name)
            try:
                option = found.factory()
                if not isinstance(option, click.Option):
                    raise TypeError("not a click.Option")
            except Exception as exc:  # a broken plugin must not take the CLI down
                click.echo(f"tts-ops: warning: plugin {found.plugin!r} could not build its"
                           f" flag {name!r}: {exc}", err=True)
                continue
            option.expose_value = False
            option.callback = _remember(found.info.get("backend", ""),
                                        found.info.get("key", name))
            flags.append(option)
        return _with_flags(command, flags) if flags else command

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx))
        register = self._plugin_commands(ctx)
        return sorted(names | set(register.names() if register is not None else []))

    def invoke(self, ctx: click.Context) -> Any:
        try:
            result = super().invoke(ctx)
            _warn_policy(ctx.obj)
            return result
        except TtsOpsError as exc:
            app = ctx.obj
            if app is not None and getattr(app, "debug", False):
                raise
            report_error(exc)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt as exc:
            from tts_ops.cli.pipes import Terminated

            if isinstance(exc, Terminated):
                click.echo("tts-ops: terminated", err=True)
                ctx.exit(143)
            click.echo("tts-ops: interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:  # the reader went away (| head): no traceback, no more output
            import os

            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            click.echo("tts-ops: output closed before the command finished", err=True)
            ctx.exit(1)
        except OSError as exc:
            from tts_ops.logwriter import DISK_ERRORS

            app = ctx.obj
            if exc.errno not in DISK_ERRORS or (app is not None and getattr(app, "debug", False)):
                raise
            # a state write that failed left the previous file in place (atomic writes)
            where = getattr(app, "state_dir_option", None) or "the state dir"
            click.echo(f"tts-ops: error: cannot write under {where}: {exc.strerror}; free"
                       " space there and run it again (the previous state is kept)", err=True)
            ctx.exit(1)


def _with_flags(command: click.Command, flags: list[click.Option]) -> click.Command:
    import copy

    new = copy.copy(command)
    if isinstance(command, click.Group):
        new.commands = {n: _with_flags(c, flags) for n, c in command.commands.items()}  # type: ignore[attr-defined]
    elif any("--process-manager" in getattr(p, "opts", []) for p in command.params):
        taken = {o for p in command.params for o in getattr(p, "opts", [])}
        new.params = [*command.params, *(f for f in flags if not set(f.opts) & taken)]
    return new


def _leaves(command: click.Command) -> list[click.Command]:
    if isinstance(command, click.Group):
        return [leaf for sub in command.commands.values() for leaf in _leaves(sub)]
    return [command]


def _takes_backend_flags(command: click.Command) -> bool:
    return any("--process-manager" in getattr(p, "opts", [])
               for leaf in _leaves(command) for p in leaf.params)


def _remember(backend: str, key: str) -> Callable[..., Any]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        if value is not None and ctx.obj is not None:
            ctx.obj.backend_options.setdefault(backend, {})[key] = value
        return value

    return callback


def _warn_policy(app: Any) -> None:
    """A command the validators do not gate (stop, status, logs) ran anyway: say why not."""
    problems = getattr(app, "policy_problems", None)
    if problems and not app.policy_enforced:
        click.echo(f"tts-ops: warning: {printable(problems[0])}"
                   + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
                   + "; start, deploy and install refuse this config", err=True)


def report_error(exc: TtsOpsError) -> None:
    problems = getattr(exc, "problems", None)
    if problems and len(problems) > 1:
        for line in problems:
            click.echo(f"tts-ops: error: {printable(line)}", err=True)
        return
    click.echo(f"tts-ops: error: {printable(exc.message)}", err=True)
    for line in exc.details:
        if line != exc.message:
            click.echo(f"  {printable(line)}", err=True)


def create_cli(host_factory: Callable[[], Any] | None = None) -> click.Group:
    """Build the ``tts-ops`` click group. ``host_factory`` replaces the plugin host in tests."""

    @click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, "--version", prog_name="tts-ops")
    @click.option(
        "-c", "--config", "config_path", metavar="FILE", envvar="TTS_OPS_CONFIG",
        help="Services config (JSON or TOML). Default: $TTS_OPS_CONFIG, ./tts_services.json,"
        " else the embedded default.",
    )
    @click.option(
        "--state-dir", metavar="DIR", envvar="TTS_OPS_STATE_DIR",
        help="State directory. Default: $TTS_OPS_STATE_DIR, $XDG_STATE_HOME/tts-ops,"
        " /var/lib/tts-ops (root).",
    )
    @click.option("-v", "--verbose", is_flag=True, help="Say more (e.g. why a backend was chosen).")
    @click.option("--debug", is_flag=True, help="Show tracebacks for handled errors.")
    @click.pass_context
    def cli(ctx: click.Context, config_path: str | None, state_dir: str | None, verbose: bool,
            debug: bool) -> None:
        """Deploy, supervise, discover and roll out a text-to-speech HTTP service."""
        from tts_ops.runtime import Runtime as App

        _setup_logging(debug)
        ctx.obj = App(config_path=config_path, state_dir=state_dir, verbose=verbose, debug=debug,
                      host_factory=lambda: cli.plugin_host(ctx))

    cli.commands = _LazyCommands(_COMMANDS, _share_options)
    cli.host_factory = host_factory
    return cli


#: the core's commands: name -> (module, attribute), imported when first used, so that
#: ``tts-ops status`` does not pay for top's, web's or the logs commands' modules
_COMMANDS = {
    "plugins": ("tts_ops.cli.plugins_cmd", "plugins"),
    "backends": ("tts_ops.cli.plugins_cmd", "backends"),
    "config": ("tts_ops.cli.config_cmd", "config"),
    **{name: ("tts_ops.cli.service_cmd", name) for name in (
        "start", "stop", "restart", "status", "install", "uninstall", "enable", "disable",
        "recover")},
    "reload": ("tts_ops.cli.service_cmd", "restart"),  # pm2's name for a zero-downtime restart
    "logs": ("tts_ops.cli.logs_cmd", "logs"),
    "events": ("tts_ops.cli.events_cmd", "events"),
    "discovery": ("tts_ops.cli.discovery_cmd", "discovery"),
    "deploy": ("tts_ops.cli.deploy_cmd", "deploy"),
    "releases": ("tts_ops.cli.deploy_cmd", "releases"),
    "rollback": ("tts_ops.cli.deploy_cmd", "rollback"),
    "orchestrate": ("tts_ops.cli.orchestrate_cmd", "orchestrate"),
    "router": ("tts_ops.cli.router_cmd", "router"),
    "fleet": ("tts_ops.cli.fleet_cmd", "fleet"),
    "top": ("tts_ops.cli.top_cmd", "top"),
    "web": ("tts_ops.cli.web_cmd", "web"),
    "completion": ("tts_ops.cli.completion", "completion"),
}


class _LazyCommands(dict):  # type: ignore[type-arg]
    """``Group.commands`` whose values are imported on first access: the names are all
    there (``--help``, completion), a command's module loads when it is used."""

    def __init__(self, table: dict[str, tuple[str, str]],
                 prepare: Callable[[click.Command], None]) -> None:
        super().__init__(dict.fromkeys(table))
        self._table = table
        self._prepare = prepare

    def __getitem__(self, name: str) -> click.Command:
        command = super().__getitem__(name)
        if command is None:
            import importlib

            module, attribute = self._table[name]
            command = getattr(importlib.import_module(module), attribute)
            self._prepare(command)
            super().__setitem__(name, command)
        return command

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return self[name] if name in self else default  # noqa: SIM401 - self.get is this

    def values(self) -> Any:
        return [self[name] for name in self]

    def items(self) -> Any:
        return [(name, self[name]) for name in self]


def _share_options(command: click.Command) -> None:
    """Give every leaf command under ``command`` (or ``command`` itself, a leaf) ``-c``,
    ``--state-dir``, ``-v`` and ``--debug`` too, so they work after the subcommand as well
    as before it (``tts-ops status -v``)."""

    def setter(attr: str):
        def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
            if value and ctx.obj is not None:
                setattr(ctx.obj, attr, value)
            return value

        return callback

    def shared() -> list[click.Parameter]:
        return [
            click.Option(["-c", "--config"], metavar="FILE", expose_value=False,
                         callback=setter("config_path"),
                         help="Services config (JSON or TOML); as before the subcommand."),
            click.Option(["--state-dir"], metavar="DIR", expose_value=False,
                         callback=setter("state_dir_option"),
                         help="State directory; as before the subcommand."),
            click.Option(["-v", "--verbose"], is_flag=True, expose_value=False,
                         callback=setter("verbose"), help="Say more."),
            click.Option(["--debug"], is_flag=True, expose_value=False,
                         callback=setter("debug"), help="Show tracebacks for handled errors."),
        ]

    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _share_options(sub)
        return
    taken = {opt for p in command.params for opt in getattr(p, "opts", [])}
    command.params.extend(p for p in shared() if not set(p.opts) & taken)


def _setup_logging(debug: bool) -> None:
    import os

    if not debug and not os.environ.get("TTS_LOG_LEVEL"):
        return  # logging's own last resort prints warnings; its import costs 5 ms a run
    import logging

    level = "DEBUG" if debug else os.environ.get("TTS_LOG_LEVEL", "WARNING").upper()
    logging.basicConfig(format="tts-ops: %(levelname)s: %(message)s", stream=sys.stderr,
                        level=getattr(logging, level, logging.WARNING))


def main() -> None:
    create_cli()(prog_name="tts-ops")
