"""The ``options.systemd`` section of a service: scope and hardening."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SCOPES = ("auto", "user", "system")
KEYS = {"scope", "hardening"}


@dataclass(frozen=True)
class SystemdOptions:
    scope: str = "auto"
    hardening: bool = True


def options_for(service: Any, override_scope: str | None = None) -> SystemdOptions:
    raw = dict(service.options.get("systemd", {}))
    scope = override_scope if override_scope not in (None, "auto") else raw.get("scope", "auto")
    return SystemdOptions(scope=scope, hardening=raw.get("hardening", True))


def validate_options(config: Any) -> list[str]:
    import difflib

    problems = []
    for i, svc in enumerate(config.services):
        raw = svc.options.get("systemd")
        if raw is None:
            continue
        where = f"services[{i}].options.systemd"
        for key in sorted(set(raw) - KEYS):
            close = difflib.get_close_matches(key, sorted(KEYS), n=1)
            valid = ", ".join(sorted(KEYS))
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {valid}"
            problems.append(f"{where}.{key}: unknown key{hint}")
        if "scope" in raw and raw["scope"] not in SCOPES:
            problems.append(
                f"{where}.scope: must be one of auto, user, system (got {raw['scope']!r})")
        if "hardening" in raw and not isinstance(raw["hardening"], bool):
            problems.append(
                f"{where}.hardening: must be true or false (got {raw['hardening']!r})")
    return problems
