"""The config models. Every default lives here and in docs/config.md (a test keeps them equal).

The seed's ``tts_services.json`` validates unchanged; unknown keys are errors.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from tts_ops.config.fields import (
    ENV_NAME,
    Backoff,
    Bytes,
    Count,
    ExitCode,
    Instances,
    Megabytes,
    MemorySize,
    Percent,
    Port,
    PositiveCount,
    PositiveSeconds,
    RouterName,
    SafePath,
    SafeText,
    Scale,
    Seconds,
    ServiceName,
    SignalName,
    Tasks,
)
from tts_ops.config.service import HealthMethods, ServiceMethods
from tts_ops.fleet.inventory import FleetConfig

Engine = Literal["hybrid", "espeak", "piper", "coqui"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class _Model(BaseModel):
    # strict: no bool as int, no "20100" as a port; allow_inf_nan=False: no NaN or inf
    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=False, strict=True,
                              allow_inf_nan=False)


class HealthCheck(HealthMethods, _Model):
    """How to tell that a service is healthy.

    Written in a config as a string: ``"http"`` (GET the default path), ``"/ready"`` or
    ``"http:/ready"`` (GET that path on the service's host and port), a full
    ``"http://host:port/path"`` URL, ``"tcp"`` (connect to host and port) or ``"none"``;
    or as an object with these fields.
    """

    type: Literal["http", "tcp", "none"] = "http"
    path: SafeText = "/health"
    url: SafeText | None = None
    timeout: PositiveSeconds = 2.0

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text in ("http", "tcp", "none"):
            return {"type": text}
        if text.startswith("http:/") and not text.startswith("http://"):
            text = text[len("http:") :]
        if text.startswith("/"):
            return {"type": "http", "path": text}
        if text.startswith(("http://", "https://")):
            return {"type": "http", "url": text}
        raise PydanticCustomError(
            "health_check",
            "invalid health check '{got}': use http, http:/PATH, /PATH, an http:// URL, tcp or"
            " none",
            {"got": value},
        )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or any(ch.isspace() for ch in value):
            raise PydanticCustomError(
                "health_path", "must be a URL path starting with / and without spaces"
                " (got {got}); percent-encode a space as %20", {"got": repr(value)})
        return value


def check_url(value: str) -> str:
    """An http(s) URL with a host, no whitespace and a valid port."""
    from urllib.parse import urlsplit

    problem = None
    if any(ch.isspace() for ch in value):
        problem = "contains whitespace; percent-encode a space as %20"
    else:
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            problem = str(exc)
        else:
            if parts.scheme not in ("http", "https"):
                problem = "must start with http:// or https://"
            elif not parts.hostname:
                problem = "has no host"
    if problem:
        raise PydanticCustomError("url", "invalid URL {got}: {problem}",
                                  {"got": repr(value), "problem": problem})
    return value


class Dependency(_Model):
    """One edge of the orchestration graph (the seed's orchestration_config.json)."""

    service_name: SafeText
    dependency_type: Literal["required", "optional"] = "required"
    timeout: Seconds = 30.0
    health_check_url: SafeText | None = None

    @field_validator("health_check_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)
    condition: Literal["started", "ready", "healthy", "completed"] = "healthy"
    dependent: ServiceName | None = None


class DeploySettings(_Model):
    """How ``tts-ops deploy`` rolls this service out (strategies read what they need).

    A strategy whose registration carries an options model gets its own section,
    ``deploy.<strategy>`` (``"deploy": {"strategy": "shadow", "shadow": {...}}``), which
    the core validates with that model (`tts_ops.config.plugin_options.deploy_problems`).
    """

    model_config = ConfigDict(extra="allow")

    #: a registered strategy's name (built-in or a plugin's): checked against the registered
    #: ones when the config is loaded with its plugins (`strategy_problems`)
    strategy: SafeText = "direct"
    drain_seconds: Seconds = 2.0
    progress_deadline_seconds: PositiveSeconds = 120.0
    keep_releases: PositiveCount = 5
    verify_text: SafeText = "Deployment verification."


class ServiceConfig(ServiceMethods, _Model):
    """One service. The first block of fields is the seed's; the rest are tts-ops's."""

    # --- the seed's fields ---
    name: ServiceName
    engine_type: Engine = "hybrid"
    port: Port = 9000
    host: SafeText = "127.0.0.1"
    log_level: LogLevel = "INFO"
    max_restarts: Count = 3
    restart_delay: Seconds = 5.0
    health_check_interval: PositiveSeconds = 30.0
    enable_coqui: bool = False
    coqui_model: SafeText | None = None
    #: the reference server only: worker processes (None: one per core), piper voices
    #: from a directory, and a port for the Wyoming protocol on the service's host
    workers: Instances | None = None
    voices_dir: SafePath | None = None
    wyoming_port: Port | None = None
    log_file: SafePath | None = None
    pid_file: SafePath | None = None

    # --- what to run ---
    command: list[SafeText] | None = Field(default=None, min_length=1)
    env: dict[str, SafeText] = Field(default_factory=dict)
    working_dir: SafePath | None = None
    user: SafeText | None = None
    notify: bool | None = None
    process_manager: SafeText | None = None
    #: who binds ``host:port``: ``inherit`` = tts-ops, once, and every generation of the
    #: service inherits it (zero downtime on the address; the command must accept
    #: ``LISTEN_FDS``), ``none`` = the command binds it. Default: inherit for the reference
    #: server, none for any other command.
    socket: Literal["inherit", "none"] | None = None
    #: a registered router (``haproxy``) that owns ``host:port`` in front of every
    #: instance, which then listens on a private loopback port; None: the socket
    #: hand-over of ``socket`` above (see docs/routers.md)
    router: RouterName | None = None
    #: ``host``: the router fronts this host's instances; ``cluster``: also every other
    #: host's passing instances of the service in the shared registry (etcd)
    router_scope: Literal["host", "cluster"] = "host"

    # --- readiness and health ---
    health_check: HealthCheck = Field(default_factory=HealthCheck)
    start_timeout: PositiveSeconds = 30.0
    start_seconds: Seconds = 1.0
    watchdog_sec: PositiveSeconds | None = None
    unhealthy_threshold: PositiveCount = 3
    restart_on_unhealthy: bool = True

    # --- restart policy ---
    restart_backoff: Backoff = 2.0
    restart_delay_max: Seconds = 60.0
    restart_window: PositiveSeconds = 60.0
    permanent_exit_codes: list[ExitCode] = Field(default_factory=list, max_length=256)

    # --- stopping ---
    stop_signal: SignalName = "TERM"
    stop_timeout: Seconds = 10.0

    # --- logs ---
    log_max_bytes: Bytes = 10 * 1024 * 1024
    log_backups: Count = 5

    # --- releases (tts-ops deploy) ---
    source: SafePath | None = None
    install: list[SafeText] | None = Field(default=None, min_length=1)
    deploy: DeploySettings = Field(default_factory=DeploySettings)

    # --- resources (backends that support limits: systemd) ---
    memory_max: MemorySize | None = None
    cpu_quota: Percent | None = None
    tasks_max: Tasks | None = None

    # --- orchestration ---
    depends_on: list[Dependency] = Field(default_factory=list)
    oneshot: bool = False
    min_free_memory_mb: Megabytes | None = None
    min_free_disk_mb: Megabytes | None = None

    # --- scale and metadata ---
    #: 0: a router-only host (``router_scope: cluster``): its router fronts other hosts'
    #: instances and it runs none of its own
    instances: Scale = 1
    labels: dict[SafeText, SafeText] = Field(default_factory=dict)
    options: dict[SafeText, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _router_owns_the_address(self) -> ServiceConfig:
        if self.router_scope == "cluster" and not self.router:
            raise PydanticCustomError(
                "router", "router_scope: \"cluster\" needs a router: set \"router\":"
                " \"haproxy\" too, or drop router_scope")
        if self.instances == 0 and self.router_scope != "cluster":
            raise PydanticCustomError(
                "router", "instances: 0 makes a router-only host, which needs \"router\":"
                " \"haproxy\" and \"router_scope\": \"cluster\"; otherwise use 1-64")
        if self.router and self.socket == "inherit":
            raise PydanticCustomError(
                "router", "socket: with a router the router owns the address: drop"
                " \"socket\": \"inherit\" (instances listen on private ports)")
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not ENV_NAME.match(key):
                raise PydanticCustomError(
                    "env_name",
                    "invalid environment variable name '{got}': use letters, digits and _",
                    {"got": key},
                )
        return value

    @field_validator("user")
    @classmethod
    def _known_user(cls, value: str | None) -> str | None:
        if value is None:
            return None
        import pwd

        try:
            pwd.getpwnam(value)
        except KeyError:
            raise PydanticCustomError(
                "user", "no such user {got} on this host: create it, or drop the field to"
                " run as the invoking user", {"got": repr(value)}) from None
        return value


class OrchestrationConfig(_Model):
    dependencies: list[Dependency] = Field(default_factory=list)


class DiscoveryConfig(_Model):
    """Where instances are registered, and how long records live without a heartbeat.

    Other keys belong to the registry plugin named by ``registry`` (etcd: ``endpoints``,
    ``prefix``, ...): the core validates them with the model that plugin registered.
    """

    model_config = ConfigDict(extra="allow")

    registry: SafeText = "file"
    path: SafeText | None = None
    ttl: PositiveSeconds = 30.0
    deregister_after: Seconds = 60.0
    auto_register: bool = True
    service_type: SafeText = "text-to-speech"
    #: the address (or interface) other hosts reach this host's instances at; unset: the
    #: local address of the route to the shared registry (`tts_ops.discovery.advertise`)
    advertise: SafeText | None = None


class TtsOpsConfig(_Model):
    """A whole ``tts_services.json`` (or TOML) file."""

    services: list[ServiceConfig] = Field(default_factory=list)
    discovery: DiscoveryConfig = Field(default_factory=DiscoveryConfig)
    #: the hosts ``tts-ops fleet`` operates over SSH (`tts_ops.fleet.inventory`)
    fleet: FleetConfig | None = None
    #: per-environment overrides: {"production": {"tts-primary": {"log_level": "WARNING"}}}
    environments: dict[Literal["development", "staging", "production"],
                       dict[SafeText, dict[str, Any]]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique(self) -> TtsOpsConfig:
        seen: dict[str, int] = {}
        bound: dict[tuple[str, int], int] = {}
        for i, svc in enumerate(self.services):
            if svc.name in seen:
                raise PydanticCustomError(
                    "duplicate",
                    "services[{i}].name: duplicate service name '{name}' (also services[{j}])",
                    {"i": i, "j": seen[svc.name], "name": svc.name},
                )
            seen[svc.name] = i
            if not svc.uses_port:
                continue
            for port in range(svc.port, svc.port + svc.address_count):
                key = (svc.host, port)
                if key in bound:
                    raise PydanticCustomError(
                        "duplicate",
                        "services[{i}].port: port {port} is already used by services[{j}]",
                        {"i": i, "j": bound[key], "port": port},
                    )
                bound[key] = i
        return self

    def get(self, name: str) -> ServiceConfig | None:
        return next((s for s in self.services if s.name == name), None)

    def names(self) -> list[str]:
        return [s.name for s in self.services]


def strategy_problems(config: Any, registered: list[str]) -> list[str]:
    """A ``deploy.strategy`` that no installed plugin registers, with the names that are."""
    import difflib

    problems = []
    for i, svc in enumerate(config.services):
        name = svc.deploy.strategy
        if name not in registered:
            close = difflib.get_close_matches(name, registered, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.append(f"services[{i}].deploy.strategy: no strategy named {name!r};"
                            f" {hint}registered: {', '.join(registered) or 'none'}")
    return problems


def with_overrides(base: Any, overrides: dict[str, Any]) -> ServiceConfig:
    """``base`` (a model or a cached view) with one environment's overrides, validated."""
    return ServiceConfig.model_validate({**base.model_dump(mode="json"), **overrides})


def environment_problems(config: Any) -> list[str]:
    """Every problem of the ``environments`` overrides, validated like the base services."""
    from pydantic import ValidationError

    from tts_ops.config.loader import format_errors

    lines: list[str] = []
    for env, services in config.environments.items():
        for name, overrides in services.items():
            where = f"environments.{env}.{name}"
            base = config.get(name)
            if base is None:
                known = ", ".join(config.names()) or "none"
                lines.append(f"{where}: no service named {name!r} (services: {known})")
                continue
            if overrides.get("name", name) != name:
                lines.append(f"{where}.name: an environment cannot rename a service")
                continue
            try:
                with_overrides(base, overrides)
            except ValidationError as exc:
                lines += [f"{where}.{p}" for p in format_errors(ServiceConfig, exc)]
    return lines


EMBEDDED_DEFAULT: dict[str, Any] = {
    "services": [{"name": "tts-primary", "engine_type": "hybrid", "port": 9000}]
}
