"""The entry point of tts-ops-supervisor: the ``supervisor`` backend and its config section."""

from __future__ import annotations

from tts_ops import hookimpl


def _supervisor(context):
    from tts_ops_supervisor.backend import SupervisorBackend  # imported only when used

    return SupervisorBackend(context)


def _options() -> type:
    """``options.supervisor``: ``conf``, the supervisord config to read the server from."""
    from pydantic import BaseModel, ConfigDict, StrictStr

    class SupervisorSection(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        conf: StrictStr | None = None

    return SupervisorSection


@hookimpl
def tts_ops_register_backends(register) -> None:
    register.add("supervisor", _supervisor, options=_options, auto_order=20)


def _conf_flag():
    import click

    return click.Option(["--supervisor-conf"], metavar="FILE",
                        help="supervisord config to read the server URL and credentials"
                        " from (supervisor). Default: options.supervisor.conf.")


@hookimpl
def tts_ops_register_options(register) -> None:
    register.add("supervisor_conf", _conf_flag, backend="supervisor", key="conf")


def _supervisor_files(location):
    from tts_ops.plugin import FileSink

    sink = FileSink(location)  # supervisord's NAME.log.N backups are read too
    sink.name = "supervisor"
    return sink


@hookimpl
def tts_ops_register_log_sinks(register) -> None:
    register.add("supervisor", _supervisor_files)
