"""`Register`: what registration hooks receive, and what the host keeps of it.

Named after tox's `ToxEnvRegister`: a plugin calls ``register.add(name, factory)``;
the host records which plugin added each name so that a duplicate is reported
with both plugins named.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NamedTuple

from tts_ops.errors import PluginError

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class Registration(NamedTuple):
    # a NamedTuple, not a frozen dataclass: built on every command, in a third the time
    name: str
    factory: Callable[..., Any]
    plugin: str
    info: dict[str, Any] = {}


class Register:
    """Collects the implementations of one kind (backends, strategies, ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Registration] = {}
        self._plugin = "?"

    def _for_plugin(self, plugin: str) -> Register:
        self._plugin = plugin
        return self

    def add(self, name: str, factory: Callable[..., Any], **info: Any) -> None:
        """Register ``factory`` under ``name`` (lowercase letters, digits, ``_``)."""
        if not _NAME.match(name):
            raise PluginError(
                f"plugin {self._plugin!r} registers {self.kind} {name!r}: names must match"
                f" {_NAME.pattern}"
            )
        if name in self._items:
            first = self._items[name].plugin
            raise PluginError(
                f"{self.kind} {name!r} is registered by both {first!r} and {self._plugin!r};"
                f" uninstall one of them or limit plugins with TTS_OPS_PLUGINS"
            )
        self._items[name] = Registration(name, factory, self._plugin, dict(info))

    def names(self) -> list[str]:
        return sorted(self._items)

    def get(self, name: str) -> Registration | None:
        return self._items.get(name)

    def by_plugin(self, plugin: str) -> list[str]:
        return sorted(n for n, r in self._items.items() if r.plugin == plugin)
