"""What a service config *does*, shared by the pydantic model and the cached view.

`ServiceMethods` holds the derived values (the command to run, the health URL, ...);
the pydantic `ServiceConfig` and the plain `ServiceView` both inherit it. The view is
built from a config that already passed validation (see `tts_ops.config.cache`), so hot
commands such as ``status`` and ``stop`` never import pydantic. Standard library only.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

PATH_FIELDS = ("log_file", "pid_file", "working_dir", "source", "voices_dir")
#: set by a deploy on each slot of a ``socket: inherit`` service: the address it shares
ADDRESS_LABEL = "tts-ops/address"
OWNER_LABEL = "tts-ops/service"
#: fields added after releases were first snapshotted: a view of an older one has them unset
NEWER_FIELDS = ("socket", "workers", "voices_dir", "wyoming_port", "router", "router_scope")


class HealthMethods:
    type: str
    path: str
    url: str | None

    def describe(self) -> str:
        if self.type == "http":
            return self.url or f"http:{self.path}"
        return self.type


class ServiceMethods:
    name: str
    command: list[str] | None
    host: str
    port: int
    health_check: Any
    notify: bool | None
    log_file: Path | None
    labels: dict[str, str]
    socket: str | None
    router: str | None
    instances: int

    @property
    def uses_reference_server(self) -> bool:
        return self.command is None

    @property
    def uses_port(self) -> bool:
        """Whether ``host:port`` is the service's own (its health check or the reference server)."""
        hc = self.health_check
        return self.uses_reference_server or hc.type == "tcp" or (hc.type == "http" and not hc.url)

    @property
    def speaks_notify(self) -> bool:
        """Whether the service sends ``READY=1`` (the reference server does)."""
        return self.notify if self.notify is not None else self.uses_reference_server

    @property
    def socket_mode(self) -> str:
        """``inherit`` (tts-ops owns the address and passes it) or ``none`` (the command
        binds; with a router, its private port)."""
        if self.router:
            return "none"
        return self.socket or ("inherit" if self.uses_reference_server else "none")

    @property
    def private_slots(self) -> bool:
        """Whether deploy slots listen on private loopback ports (a router or a shared
        socket owns the service's address) rather than on ``port .. port+2N-1``."""
        return bool(self.router) or self.socket_mode == "inherit"

    @property
    def address_count(self) -> int:
        """How many ports from ``port`` on the service itself binds when started."""
        return 1 if self.router else self.instances

    @property
    def instance_id(self) -> str:
        """Its discovery record id: ``NAME``, or ``NAME@SLOT`` for a deploy slot."""
        slot = self.labels.get("tts-ops/slot")
        return f"{self.owner}@{slot}" if slot else self.name

    def shared_address(self) -> tuple[str, int] | None:
        """The address whose socket this service inherits: its own, or for a deploy slot
        its service's; None when the command binds its address itself."""
        if self.socket_mode != "inherit":
            return None
        label = self.labels.get(ADDRESS_LABEL)
        if label:
            host, _, port = label.rpartition(":")
            return host, int(port)
        return self.host, self.port

    @property
    def owner(self) -> str:
        """The configured service this one runs for: a deploy slot's, else itself."""
        return self.labels.get(OWNER_LABEL) or self.name

    def command_at(self, port: int, host: str) -> list[str] | None:
        """``command`` with ``{port}`` and ``{host}`` filled in (None: the reference
        server, which takes its address as flags)."""
        if self.command is None:
            return None
        return [a.replace("{port}", str(port)).replace("{host}", host) for a in self.command]

    def argv(self, python: str | None = None) -> list[str]:
        """The command to run: ``command``, or the reference TTS server with this config."""
        if self.command is not None:
            return list(self.command)
        argv = [python or sys.executable, "-m", "tts_server", "--host", self.host]
        argv += ["--port", str(self.port), "--engine", self.engine_type]  # type: ignore[attr-defined]
        argv += ["--log-level", self.log_level]  # type: ignore[attr-defined]
        argv += ["--instance", self.instance_id]
        if self.enable_coqui:  # type: ignore[attr-defined]
            argv.append("--enable-coqui")
        if self.coqui_model:  # type: ignore[attr-defined]
            argv += ["--coqui-model", self.coqui_model]  # type: ignore[attr-defined]
        if self.workers:  # type: ignore[attr-defined]
            argv += ["--workers", str(self.workers)]  # type: ignore[attr-defined]
        if self.voices_dir:  # type: ignore[attr-defined]
            argv += ["--voices-dir", str(self.voices_dir)]  # type: ignore[attr-defined]
        if self.wyoming_port:  # type: ignore[attr-defined]
            host = (self.shared_address() or (self.host, self.port))[0]
            argv += ["--wyoming-uri", f"tcp://{host}:{self.wyoming_port}"]  # type: ignore[attr-defined]
        return argv

    def health_url(self) -> str | None:
        hc = self.health_check
        if hc.type != "http":
            return None
        if hc.url:
            return hc.url
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "localhost") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}{hc.path}"

    def log_path(self, state_dir: Path) -> Path:
        return self.log_file or state_dir / "logs" / f"{self.name}.log"


class SectionView:
    """A plain config section (``discovery``, ``deploy``, a dependency) rebuilt from its
    JSON form, with the pydantic methods a plugin may call on one."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.__dict__.update(data)

    def model_copy(self, update: dict[str, Any] | None = None) -> SectionView:
        return type(self)({**self.__dict__, **(update or {})})

    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        return dict(self.__dict__)

    def model_dump_json(self) -> str:
        import json

        return json.dumps(self.__dict__, separators=(",", ":"))


class HealthView(HealthMethods, SectionView):
    pass


class ServiceView(ServiceMethods):
    """A read-only service config rebuilt from its validated JSON form."""

    def __init__(self, data: dict[str, Any]) -> None:
        object.__setattr__(self, "_source", dict(data))
        values = dict(data)
        for key in NEWER_FIELDS:  # snapshots written before these fields existed
            values.setdefault(key, None)
        for key in PATH_FIELDS:
            if values.get(key) is not None:
                values[key] = Path(values[key])
        values["health_check"] = HealthView(values["health_check"])
        if isinstance(values.get("deploy"), dict):
            values["deploy"] = SectionView(values["deploy"])
        values["depends_on"] = [SectionView(d) if isinstance(d, dict) else d
                                for d in values.get("depends_on") or []]
        self.__dict__.update(values)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a cached service config is read-only")

    def model_copy(self, update: dict[str, Any] | None = None) -> ServiceView:
        """A changed copy, as pydantic's model_copy (used for deploy slots)."""
        data = dict(self._source)  # type: ignore[attr-defined]
        for key, value in (update or {}).items():
            if isinstance(value, SectionView):
                value = value.model_dump()
            data[key] = str(value) if isinstance(value, Path) else value
        return ServiceView(data)

    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        """As pydantic's: JSON types with ``mode="json"``, else paths as `Path`."""
        data = dict(self._source)  # type: ignore[attr-defined]
        if mode != "json":
            for key in PATH_FIELDS:
                if data.get(key) is not None:
                    data[key] = Path(data[key])
        return data

    def model_dump_json(self) -> str:
        import json

        return json.dumps(self._source, separators=(",", ":"))  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"ServiceView(name={self.name!r})"


class ConfigView:
    def __init__(self, data: dict[str, Any]) -> None:
        self.services = [ServiceView(s) for s in data["services"]]
        self.discovery = SectionView(data.get("discovery") or {})
        self.environments: dict[str, dict[str, dict[str, Any]]] = data.get("environments") or {}
        self._fleet = data.get("fleet")

    @property
    def fleet(self) -> Any:
        """The ``fleet`` section (validated when the config was), as plain objects."""
        if self._fleet is None:
            return None
        from tts_ops.fleet.hosts import FleetView

        return FleetView(self._fleet)

    def get(self, name: str) -> ServiceView | None:
        return next((s for s in self.services if s.name == name), None)

    def names(self) -> list[str]:
        return [s.name for s in self.services]
