"""The entry point of tts-ops-systemd: the ``systemd`` backend and its config section."""

from __future__ import annotations

from tts_ops import hookimpl


def _systemd(context):
    from tts_ops_systemd.backend import SystemdBackend  # imported only when used

    return SystemdBackend(context)


def _options() -> type:
    from tts_ops_systemd.options import model

    return model()


@hookimpl
def tts_ops_register_backends(register) -> None:
    # auto_order: systemd first (its services outlive tts-ops and the login session)
    register.add("systemd", _systemd, options=_options, auto_order=10)  # options.systemd


def _scope_flag():
    import click

    return click.Option(["--scope"], type=click.Choice(["auto", "user", "system"]),
                        help="systemd scope: user units or system units (systemd)."
                        " Default: options.systemd.scope, else auto.")


@hookimpl
def tts_ops_register_options(register) -> None:
    register.add("scope", _scope_flag, backend="systemd")  # overrides options.systemd.scope


def _journald(location):
    from tts_ops_systemd.journal import JournaldSink

    return JournaldSink(*location)


@hookimpl
def tts_ops_register_log_sinks(register) -> None:
    register.add("journald", _journald)
