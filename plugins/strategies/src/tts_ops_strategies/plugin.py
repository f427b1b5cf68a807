"""The entry point of tts-ops-strategies: registers the four strategies."""

from __future__ import annotations

from tts_ops import hookimpl


def _lazy(module: str, cls: str):
    def factory():
        import importlib

        return getattr(importlib.import_module(f"tts_ops_strategies.{module}"), cls)()

    return factory


@hookimpl
def tts_ops_register_strategies(register) -> None:
    register.add("direct", _lazy("direct", "Direct"))
    register.add("blue_green", _lazy("blue_green", "BlueGreen"))
    register.add("rolling", _lazy("rolling", "Rolling"))
    register.add("canary", _lazy("canary", "Canary"))
