"""The process-backend contract: one state vocabulary, one status record, one protocol.

Backends differ in mechanism, never in meaning: ``start`` returning means the service
is *ready* on every backend; ``stop`` returning means no process of it is left.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from tts_ops.errors import MissingComponent, OperationFailed

if TYPE_CHECKING:
    from tts_ops.config.models import ServiceConfig


class State(enum.StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    UNHEALTHY = "unhealthy"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    FAILED = "failed"


class Support(enum.StrEnum):
    NATIVE = "native"
    EMULATED = "emulated"
    UNSUPPORTED = "unsupported"


CAPABILITIES = (
    "readiness",
    "watchdog",
    "health_restart",
    "resource_limits",
    "log_rotation",
    "instances",
    "auto_start",
    "shared_socket",  # one listening socket passed to every generation (zero downtime)
)


@dataclass
class ServiceStatus:
    """What ``tts-ops status --json`` prints for one service, whatever the backend."""

    name: str
    backend: str
    state: State = State.STOPPED
    pid: int | None = None
    ready: bool = False
    uptime_s: float | None = None
    restarts: int = 0
    exit_code: int | None = None
    exit_signal: int | None = None
    cpu_percent: float | None = None
    rss_bytes: int | None = None
    host: str | None = None
    port: int | None = None
    status_text: str | None = None
    reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        # asdict's deep copy of every field cost 4 ms for a 20-service status; only
        # ``extra`` holds containers
        data = {name: getattr(self, name) for name in _STATUS_FIELDS}
        data["state"] = str(self.state)
        data["extra"] = copy.deepcopy(self.extra)
        return data


_STATUS_FIELDS = tuple(ServiceStatus.__dataclass_fields__)


def command_problem(service: ServiceConfig) -> str | None:
    """Why the service's command cannot be executed here, or None (checked before a start)."""
    import os
    import shutil
    from pathlib import Path as _Path

    if service.uses_reference_server:
        import importlib.util

        if importlib.util.find_spec("tts_server") is None:
            from tts_ops.hints import install_hint

            return ("the reference TTS server is not installed (the distribution tts-server);"
                    f" {install_hint('tts-server')}, or give the service a command")
    argv0 = service.argv()[0]
    if shutil.which(argv0, path=service.env.get("PATH", os.environ.get("PATH"))) is not None:
        return None
    why = "No such file or directory" if not _Path(argv0).exists() else "Permission denied"
    return f"cannot execute {argv0!r}: {why}"


class StartFailed(OperationFailed):
    """Raised by ``ProcessBackend.start`` when the service did not become ready (exit 1).

    ``log_tail`` holds the service's last log lines for the operator.
    """

    def __init__(self, reason: str, log_tail: list[str] | None = None) -> None:
        super().__init__(reason, details=log_tail or [])
        self.reason = reason
        self.log_tail = log_tail or []


class BackendUnavailable(MissingComponent):
    """The process manager behind a backend is not reachable (exit code 3)."""


@dataclass
class BackendContext:
    """What a backend factory receives from the host."""

    state_dir: Path
    emit: Callable[..., None] = lambda hook, **kw: None
    options: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class ProcessBackend(Protocol):
    """What every process backend implements. ``name`` is its registered name."""

    name: str

    def available(self) -> tuple[bool, str]:
        """Whether the process manager is reachable, and a one-line reason either way.

        A backend whose manager depends on a service's own options (supervisor's
        ``options.supervisor.conf``) may also define ``available_for(service)``, which the
        deploy pre-checks ask instead."""
        ...

    def capabilities(self) -> dict[str, Support]:
        """Each name of `CAPABILITIES` mapped to how this backend supports it."""
        ...

    def install(self, service: ServiceConfig) -> str | None:
        """Make the service known to the process manager (unit file, program section);
        returns what changed in an existing definition (a diff), or None."""
        ...

    def uninstall(self, service: ServiceConfig) -> None:
        """Stop the service and remove everything ``install`` created."""
        ...

    def enable(self, service: ServiceConfig) -> None:
        """Start the service automatically when the process manager starts."""
        ...

    def disable(self, service: ServiceConfig) -> None:
        """Undo ``enable``."""
        ...

    def start(self, service: ServiceConfig) -> ServiceStatus:
        """Start and return once ready; raise `StartFailed` after ``start_timeout``.

        Starting a service that is already running and ready returns its status.
        """
        ...

    def stop(self, service: ServiceConfig, *, force: bool = False) -> ServiceStatus:
        """Stop, and return only when no process of the service is left.

        ``force`` skips the graceful wait (SIGKILL at once).
        """
        ...

    def restart(self, service: ServiceConfig) -> ServiceStatus:
        """Stop then start; returns once ready again."""
        ...

    def release_socket(self, service: ServiceConfig) -> None:
        """Close the address held for ``service`` (``socket: inherit``) once no generation
        of it runs; called by core after a stop. Nothing to do when none is held."""
        ...

    def status(self, services: list[ServiceConfig]) -> list[ServiceStatus]:
        """Status of several services, asking the process manager as few times as it can."""
        ...

    def logs(self, service: ServiceConfig, lines: int, follow: bool) -> Iterator[str]:
        """The last ``lines`` lines of the service's output, then new ones if ``follow``."""
        ...


@dataclass
class BackendEvent:
    """One lifecycle event seen by a backend (``events()``, optional for backends).

    ``kind`` is one of started, ready, exited, restarted, unhealthy, healthy, stopping,
    stopped, failed.
    """

    ts: float
    service: str
    kind: str
    pid: int | None = None
    restarts: int = 0
    exit_code: int | None = None
    exit_signal: int | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


#: which hook each event kind is dispatched to (kinds without a hook are only printed)
EVENT_HOOKS = {
    "started": "tts_ops_service_started",
    "ready": "tts_ops_service_ready",
    "exited": "tts_ops_service_exited",
    "restarted": "tts_ops_service_restarted",
    "stopping": "tts_ops_service_stopping",
    "stopped": "tts_ops_service_stopped",
    "failed": "tts_ops_service_failed",
}
