"""The fleet as the commands use it, without pydantic: a validated ``fleet`` section read
back (from the config cache) as plain objects, and what each host is sent.

`tts_ops.fleet.inventory` holds the models that validate the section; a fleet command
over a config that validated before imports none of them (``fleet status`` stays as
quick to start as ``status``).
"""

from __future__ import annotations

from typing import Any


class HostView:
    def __init__(self, data: dict[str, Any]) -> None:
        self.name: str = data["name"]
        self.ssh: str = data["ssh"]
        self.tts_ops: str = data.get("tts_ops") or "tts-ops"
        self.state_dir: str | None = data.get("state_dir")
        self.overrides: dict[str, Any] = dict(data.get("overrides") or {})


class FleetView:
    def __init__(self, data: dict[str, Any]) -> None:
        self.hosts = [HostView(h) for h in data["hosts"]]
        self.ssh_options: list[str] = list(data.get("ssh_options") or [])
        self.parallel: int = int(data.get("parallel") or 1)

    def get(self, name: str) -> HostView | None:
        return next((h for h in self.hosts if h.name == name), None)


def host_config(document: dict[str, Any], host: Any,
                sources: dict[str, str] | None = None) -> dict[str, Any]:
    """What ``host`` receives: the config without ``fleet``, with its overrides on every
    service and its name as the discovery node of a shared registry; ``sources``: where
    each service's ``source`` directory was copied on the host (`tts_ops.fleet.sources`)."""
    out = {k: v for k, v in document.items() if k != "fleet"}
    out["services"] = [{**svc, **host.overrides} for svc in document.get("services", [])]
    for svc in out["services"]:
        if sources and svc.get("name") in sources:
            svc["source"] = sources[svc["name"]]
    discovery = dict(document.get("discovery") or {})
    if discovery.get("registry", "file") != "file":
        discovery["node"] = host.name
        out["discovery"] = discovery
    return out
