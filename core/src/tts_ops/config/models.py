"""The config models. Every default lives here and in docs/config.md (a test keeps them equal).

The seed's ``tts_services.json`` validates unchanged; unknown keys are errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from tts_ops.config.fields import (
    ENV_NAME,
    Instances,
    MemorySize,
    NonNegInt,
    Port,
    PositiveInt,
    PositiveSeconds,
    SafeText,
    Seconds,
    ServiceName,
    SignalName,
)
from tts_ops.config.service import HealthMethods, ServiceMethods

Engine = Literal["hybrid", "espeak", "piper", "coqui"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=False)


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



class Dependency(_Model):
    """One edge of the orchestration graph (the seed's orchestration_config.json)."""

    service_name: SafeText
    dependency_type: Literal["required", "optional"] = "required"
    timeout: Seconds = 30.0
    health_check_url: SafeText | None = None
    condition: Literal["started", "ready", "healthy", "completed"] = "healthy"
    dependent: ServiceName | None = None


class DeploySettings(_Model):
    """How ``tts-ops deploy`` rolls this service out (strategies read what they need)."""

    strategy: Literal["direct", "blue_green", "rolling", "canary"] = "direct"
    drain_seconds: Seconds = 2.0
    batch_size: PositiveInt = 1
    max_unavailable: NonNegInt = 0
    max_surge: PositiveInt = 1
    steps: list[Annotated[int, Field(ge=1, le=100)]] = Field(
        default_factory=lambda: [10, 50, 100], min_length=1)
    step_pause_seconds: Seconds = 5.0
    min_samples: PositiveInt = 20
    max_error_rate: Annotated[float, Field(ge=0, le=1)] = 0.01
    progress_deadline_seconds: PositiveSeconds = 120.0
    keep_releases: PositiveInt = 5
    verify_text: SafeText = "Deployment verification."

    @field_validator("steps")
    @classmethod
    def _ascending(cls, value: list[int]) -> list[int]:
        if value != sorted(value) or value[-1] != 100:
            raise PydanticCustomError("steps", "must rise and end at 100 (got {got})",
                                      {"got": value})
        return value


class ServiceConfig(ServiceMethods, _Model):
    """One service. The first block of fields is the seed's; the rest are tts-ops's."""

    # --- the seed's fields ---
    name: ServiceName
    engine_type: Engine = "hybrid"
    port: Port = 9000
    host: SafeText = "127.0.0.1"
    log_level: LogLevel = "INFO"
    max_restarts: NonNegInt = 3
    restart_delay: Seconds = 5.0
    health_check_interval: PositiveSeconds = 30.0
    enable_coqui: bool = False
    coqui_model: SafeText | None = None
    log_file: Path | None = None
    pid_file: Path | None = None

    # --- what to run ---
    command: list[SafeText] | None = Field(default=None, min_length=1)
    env: dict[str, SafeText] = Field(default_factory=dict)
    working_dir: Path | None = None
    user: SafeText | None = None
    notify: bool | None = None
    process_manager: SafeText | None = None

    # --- readiness and health ---
    health_check: HealthCheck = Field(default_factory=HealthCheck)
    start_timeout: PositiveSeconds = 30.0
    start_seconds: Seconds = 1.0
    watchdog_sec: PositiveSeconds | None = None
    unhealthy_threshold: PositiveInt = 3
    restart_on_unhealthy: bool = True

    # --- restart policy ---
    restart_backoff: Annotated[float, Field(ge=1.0)] = 2.0
    restart_delay_max: Seconds = 60.0
    restart_window: PositiveSeconds = 60.0
    permanent_exit_codes: list[Annotated[int, Field(ge=0, le=255)]] = Field(default_factory=list)

    # --- stopping ---
    stop_signal: SignalName = "TERM"
    stop_timeout: Seconds = 10.0

    # --- logs ---
    log_max_bytes: PositiveInt = 10 * 1024 * 1024
    log_backups: NonNegInt = 5

    # --- releases (tts-ops deploy) ---
    source: Path | None = None
    install: list[SafeText] | None = Field(default=None, min_length=1)
    deploy: DeploySettings = Field(default_factory=DeploySettings)

    # --- resources (backends that support limits: systemd) ---
    memory_max: MemorySize | None = None
    cpu_quota: Annotated[int, Field(ge=1, le=100000)] | None = None
    tasks_max: PositiveInt | None = None

    # --- orchestration ---
    depends_on: list[Dependency] = Field(default_factory=list)
    oneshot: bool = False
    min_free_memory_mb: NonNegInt | None = None
    min_free_disk_mb: NonNegInt | None = None

    # --- scale and metadata ---
    instances: Instances = 1
    labels: dict[SafeText, SafeText] = Field(default_factory=dict)
    options: dict[SafeText, dict[str, Any]] = Field(default_factory=dict)

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

    @field_validator("log_file", "pid_file", "working_dir", "source")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_absolute():
            raise PydanticCustomError(
                "path", "must be an absolute path (got '{got}')", {"got": str(value)}
            )
        return value


class OrchestrationConfig(_Model):
    dependencies: list[Dependency] = Field(default_factory=list)


class DiscoveryConfig(_Model):
    """Where instances are registered, and how long records live without a heartbeat."""

    registry: SafeText = "file"
    path: SafeText | None = None
    ttl: PositiveSeconds = 30.0
    deregister_after: Seconds = 60.0
    auto_register: bool = True
    service_type: SafeText = "text-to-speech"


class TtsOpsConfig(_Model):
    """A whole ``tts_services.json`` (or TOML) file."""

    services: list[ServiceConfig] = Field(default_factory=list)
    discovery: DiscoveryConfig = Field(default_factory=DiscoveryConfig)
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
            for port in range(svc.port, svc.port + svc.instances):
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


EMBEDDED_DEFAULT: dict[str, Any] = {
    "services": [{"name": "tts-primary", "engine_type": "hybrid", "port": 9000}]
}
