"""What runs for a service: `Service` -> `Generation` -> `Instance`, as every view sees it.

A service answers on its configured address; after a deploy it runs as a generation of
slots (``tts-green``, ``tts-green-0`` ...) on private ports behind that address, and during
a deploy also as the next one. These are plain, frozen values built by
`tts_ops.runtime.Runtime.service` from the state dir and the backends' statuses; public
through `tts_ops.plugin`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tts_ops.runtime.address import address_of, join_address

__all__ = ["Generation", "Instance", "Service", "address_of", "join_address"]


@dataclass(frozen=True)
class Instance:
    """One process of a generation."""

    name: str               # the process the backend runs: ``tts-green-0``
    id: str                 # its discovery record: ``tts@green-0``
    private: str | None     # where it listens itself (``127.0.0.1:41873``)
    state: str              # the backend's: running, stopped, unhealthy ...
    pid: int | None
    health: str | None      # the last check's, only while the process runs
    backend: str            # the process manager that runs it
    log_file: str | None    # where its output goes (None: the backend's own store)
    weight: int | None = None  # its discovery weight (a router's follows it); None: no record

    @property
    def running(self) -> bool:
        return self.state in ("running", "unhealthy")


@dataclass(frozen=True)
class Generation:
    """The instances of one release in one slot (``plain``, ``blue``, ``green``)."""

    name: str
    release: str | None
    serving: bool           # the generation the state dir says answers the address
    instances: tuple[Instance, ...]


@dataclass(frozen=True)
class Service:
    """A configured service, whatever generation serves it."""

    name: str
    address: str | None     # where clients reach it: the configured address
    generations: tuple[Generation, ...]
    router: Instance | None = None  # its router (HAProxy) when one owns the address

    def serving(self) -> Generation | None:
        """The generation that answers now (the one a deploy finished with)."""
        return next((g for g in self.generations if g.serving), None)

    def instances(self) -> list[Instance]:
        return [i for g in self.generations for i in g.instances]

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {"service": self.name, "address": self.address,
                "generations": [asdict(g) for g in self.generations],
                "router": asdict(self.router) if self.router else None}
