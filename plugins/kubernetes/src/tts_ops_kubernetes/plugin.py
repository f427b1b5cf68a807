"""The entry point of tts-ops-kubernetes: the ``export`` command and ``options.kubernetes``."""

from __future__ import annotations

from tts_ops.plugin import hookimpl


def _command():
    from tts_ops_kubernetes.command import export  # imported only when used

    return export


def _options() -> type:
    from tts_ops_kubernetes.options import KubernetesOptions

    return KubernetesOptions


@hookimpl
def tts_ops_register_commands(register) -> None:
    register.add("export", _command, options=_options, section="kubernetes")
