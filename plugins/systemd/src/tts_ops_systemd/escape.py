"""Quoting values for unit files, per systemd.syntax(7) and systemd.service(5).

Nothing is pasted unchecked: each kind of setting has its own rule, and a value that
cannot be represented is rejected with the setting's name.
"""

from __future__ import annotations

import re

from tts_ops.plugin import ConfigError

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _reject_control(value: str, what: str) -> None:
    if _CONTROL.search(value):
        raise ConfigError(f"{what}: control characters (newlines, tabs) cannot go into a unit")


def quote_arg(value: str, what: str = "command") -> str:
    """One ExecStart= argument: double-quoted, with \\ and " escaped, % and $ doubled.

    systemd expands C escapes inside quotes, ``%`` specifiers and ``$VAR``; escaping all
    three means the program receives exactly ``value``.
    """
    _reject_control(value, what)
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


def exec_line(argv: list[str]) -> str:
    return " ".join(quote_arg(a) for a in argv)


def environment(key: str, value: str) -> str:
    """An Environment= assignment (no $ expansion there; % specifiers and quotes apply)."""
    _reject_control(value, f"env.{key}")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{key}={escaped}"'


def path(value: str, what: str) -> str:
    """A path setting (WorkingDirectory=, append:, ReadWritePaths=): % doubled.

    Whitespace and quotes would split or confuse these settings, so they are refused.
    """
    _reject_control(value, what)
    if re.search(r"[\s\"'\\]", value):
        raise ConfigError(
            f"{what}: {value!r} contains whitespace, quotes or backslashes, which systemd"
            " cannot take in this setting; choose a path without them"
        )
    return value.replace("%", "%%")


def plain(value: str, what: str) -> str:
    """A free-text setting such as Description=: one line, % doubled."""
    _reject_control(value, what)
    return value.replace("%", "%%")
