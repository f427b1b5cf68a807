"""The entry point of tts-ops-strategies: registers the four strategies."""

from __future__ import annotations

from tts_ops import hookimpl


def _lazy(module: str, cls: str):
    def factory():
        import importlib

        return getattr(importlib.import_module(f"tts_ops_strategies.{module}"), cls)()

    return factory


def _settings(name: str):
    """The strategy's settings model, imported only when a config is validated."""

    def load():
        from tts_ops_strategies import settings

        return getattr(settings, f"{name.capitalize()}Settings")

    return load


@hookimpl
def tts_ops_register_strategies(register) -> None:
    register.add("direct", _lazy("direct", "Direct"))
    register.add("blue_green", _lazy("blue_green", "BlueGreen"))
    register.add("rolling", _lazy("rolling", "Rolling"), options=_settings("rolling"))
    register.add("canary", _lazy("canary", "Canary"), options=_settings("canary"))
