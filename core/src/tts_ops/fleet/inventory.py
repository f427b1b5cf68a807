"""The ``fleet`` section: the hosts one machine operates over SSH, and what each receives.

```json
"fleet": {"hosts": [{"name": "web-1", "ssh": "deploy@10.0.0.1",
                     "tts_ops": "/opt/tts/.venv/bin/tts-ops", "state_dir": null,
                     "overrides": {"host": "10.0.0.1"}}],
          "ssh_options": ["-i", "~/.ssh/fleet"], "parallel": 1}
```

A host's ``name`` is its discovery ``node`` too; ``overrides`` are service fields set on
every service on that host. Each host receives the config without the ``fleet`` section,
with its overrides and its node applied, validated here first by the same models the
host validates it with: a mistake is found before anything is sent.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from tts_ops.config.fields import SafeText, control_character
from tts_ops.fleet.hosts import host_config

HOST_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
# [ssh://][user@]host[:port]: never a leading '-' (ssh would read an option), no spaces
DESTINATION = re.compile(r"^(ssh://)?[A-Za-z0-9_][A-Za-z0-9_.+-]*(@[A-Za-z0-9_.:\[\]-]+)?"
                         r"(:[0-9]{1,5})?$")


def _bad(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, message.replace("{", "{{").replace("}", "}}"))


class FleetHost(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: StrictStr
    ssh: StrictStr
    #: the command on the host (a path to a venv's tts-ops, or one on its PATH)
    tts_ops: StrictStr = "tts-ops"
    state_dir: SafeText | None = None
    overrides: dict[StrictStr, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not HOST_NAME.match(value):
            raise _bad("fleet", "must be lower-case letters, digits, '_', '.' or '-' (at most"
                       f" 63), starting with a letter or digit: it is the host's discovery"
                       f" node (got {value!r})")
        return value

    @field_validator("ssh")
    @classmethod
    def _destination(cls, value: str) -> str:
        if not DESTINATION.match(value):
            raise _bad("fleet", f"must be an ssh destination, [user@]host (got {value!r}):"
                       " no spaces, no control characters, not starting with '-'")
        return value

    @field_validator("tts_ops", "state_dir")
    @classmethod
    def _argument(cls, value: str | None) -> str | None:
        if value is None:
            return value
        found = control_character(value)
        if found is not None or not value or value.startswith("-"):
            raise _bad("fleet", f"must be a command or a path, not empty, without control"
                       f" characters, not starting with '-' (got {value!r})")
        return value

    @field_validator("overrides")
    @classmethod
    def _overrides(cls, value: dict[str, Any]) -> dict[str, Any]:
        if "name" in value:
            raise _bad("fleet", "overrides: 'name' cannot be overridden: a service keeps its"
                       " name on every host")
        return value


class FleetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hosts: list[FleetHost] = Field(min_length=1)
    #: given to ssh before the destination, as written (the operator's own choices)
    ssh_options: list[SafeText] = Field(default_factory=list)
    #: hosts deployed at once (status and run ask every host at once)
    parallel: int = Field(default=1, ge=1, le=64, strict=True)

    @model_validator(mode="after")
    def _unique(self) -> FleetConfig:
        seen: set[str] = set()
        for i, host in enumerate(self.hosts):
            if host.name in seen:
                raise _bad("fleet", f"hosts[{i}].name: {host.name!r} is listed twice")
            seen.add(host.name)
        return self

    def get(self, name: str) -> FleetHost | None:
        return next((h for h in self.hosts if h.name == name), None)


def host_problems(document: dict[str, Any], fleet: FleetConfig) -> list[str]:
    """Each host's config validated as that host will validate it: one line a problem."""
    from pydantic import ValidationError

    from tts_ops.config.models import TtsOpsConfig

    problems = []
    for i, host in enumerate(fleet.hosts):
        try:
            TtsOpsConfig.model_validate(host_config(document, host))
        except ValidationError as exc:
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"] if not str(p).startswith(
                    "function-"))
                problems.append(f"fleet.hosts[{i}] ({host.name}): {where}: {err['msg']}")
    return problems
