"""The entry point of tts-ops-supervisor: the ``supervisor`` backend and its config section."""

from __future__ import annotations

from tts_ops import hookimpl


def _supervisor(context):
    from tts_ops_supervisor.backend import SupervisorBackend  # imported only when used

    return SupervisorBackend(context)


@hookimpl
def tts_ops_register_backends(register) -> None:
    register.add("supervisor", _supervisor)


@hookimpl
def tts_ops_validate_config(config) -> list[str]:
    problems = []
    for i, svc in enumerate(config.services):
        raw = svc.options.get("supervisor")
        if raw is None:
            continue
        for key in sorted(set(raw) - {"conf"}):
            problems.append(f"services[{i}].options.supervisor.{key}: unknown key; valid: conf")
        if "conf" in raw and not isinstance(raw["conf"], str):
            problems.append(f"services[{i}].options.supervisor.conf: must be a path")
    return problems


def _supervisor_files(location):
    from tts_ops.plugin import FileSink

    sink = FileSink(location)  # supervisord's NAME.log.N backups are read too
    sink.name = "supervisor"
    return sink


@hookimpl
def tts_ops_register_log_sinks(register) -> None:
    register.add("supervisor", _supervisor_files)
