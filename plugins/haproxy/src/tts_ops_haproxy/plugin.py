"""The entry point of tts-ops-haproxy: the ``haproxy`` router and its ``options.haproxy``."""

from __future__ import annotations

from tts_ops import hookimpl


def _haproxy(state_dir):
    from tts_ops_haproxy.router import HaproxyRouter  # imported only when used

    return HaproxyRouter(state_dir)


def _options() -> type:
    from tts_ops_haproxy.options import HaproxyOptions

    return HaproxyOptions


@hookimpl
def tts_ops_register_routers(register) -> None:
    register.add("haproxy", _haproxy, options=_options)
