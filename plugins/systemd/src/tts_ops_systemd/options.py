"""The ``options.systemd`` section of a service: scope and hardening."""

from __future__ import annotations

from typing import Any, NamedTuple

SCOPES = ("auto", "user", "system")


class SystemdOptions(NamedTuple):
    scope: str = "auto"
    hardening: bool = True


def options_for(service: Any, override_scope: str | None = None) -> SystemdOptions:
    raw = dict(service.options.get("systemd", {}))
    scope = override_scope if override_scope not in (None, "auto") else raw.get("scope", "auto")
    return SystemdOptions(scope=scope, hardening=raw.get("hardening", True))


def model() -> type:
    """The pydantic model of the section, which the core validates it with (imported only
    when a config is validated)."""
    from typing import Literal

    from pydantic import BaseModel, ConfigDict, StrictBool

    class SystemdSection(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        scope: Literal["auto", "user", "system"] = "auto"
        hardening: StrictBool = True

    return SystemdSection
