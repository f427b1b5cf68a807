"""`Lifecycle`: how the core fires the service lifecycle hooks, the same way for every
backend. Backends report facts (a status, `StartFailed`); the core says what happened.

- ``start``: ``tts_ops_service_started`` then ``tts_ops_service_ready`` once the backend's
  start returned (ready, on every backend), or ``tts_ops_service_failed`` when it raised
  `StartFailed`.
- ``stop``: ``tts_ops_service_stopping`` before, ``tts_ops_service_stopped`` once no process
  of the service is left; whether anything was running or not.
- ``restart``: ``stopping``, then as ``start``.

What starts (``start``, ``restart``, ``install``) gets ``{port}`` and ``{host}`` in its
command filled with the service's own address.

What happens inside a supervisor between commands (a crash, a respawn) reaches the hooks
through ``tts-ops events -f`` (`tts_ops.backend.EVENT_HOOKS`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tts_ops.backend import ServiceStatus, StartFailed, State


class Lifecycle:
    """A backend as the core uses it: every call goes to ``backend``; start, stop and
    restart also fire the hooks. Optional parts (events, rotate_logs, log_sink) show
    through only when the backend has them."""

    def __init__(self, backend: Any, emit: Callable[..., None],
                 env: Callable[[], dict[str, str]] | None = None) -> None:
        self.backend = backend
        self.name: str = backend.name
        self._emit = emit
        #: set in every service this host starts (``TTS_OPS_NODE``), unless it sets its
        #: own; asked when a service starts (a status never pays for it)
        self._env = env or dict

    def _with_env(self, service: Any) -> Any:
        """``service`` as it is started: the host's environment added where the service
        sets none, and ``{port}``/``{host}`` in its command filled with its own address
        (a deploy's slots come with theirs filled already)."""
        update: dict[str, Any] = {}
        missing = {k: v for k, v in self._env().items() if k not in service.env}
        if missing:
            update["env"] = {**service.env, **missing}
        filled = service.command_at(service.port, service.host)
        if filled != service.command:
            update["command"] = filled
        return service.model_copy(update=update) if update else service

    def install(self, service: Any) -> str | None:
        return self.backend.install(self._with_env(service))

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.backend, attr)

    def _started(self, service: Any, call: Callable[[], ServiceStatus]) -> ServiceStatus:
        try:
            status = call()
        except StartFailed as exc:
            failed = ServiceStatus(service.name, self.name, State.FAILED, reason=exc.reason)
            self._emit("tts_ops_service_failed", service=service, backend=self.name,
                       status=failed, reason=exc.reason)
            raise
        self._emit("tts_ops_service_started", service=service, backend=self.name, status=status)
        self._emit("tts_ops_service_ready", service=service, backend=self.name, status=status)
        return status

    def start(self, service: Any) -> ServiceStatus:
        service = self._with_env(service)
        return self._started(service, lambda: self.backend.start(service))

    def stop(self, service: Any, *, force: bool = False) -> ServiceStatus:
        self._emit("tts_ops_service_stopping", service=service, backend=self.name)
        status = self.backend.stop(service, force=force)
        self._emit("tts_ops_service_stopped", service=service, backend=self.name, status=status)
        return status

    def restart(self, service: Any) -> ServiceStatus:
        service = self._with_env(service)
        self._emit("tts_ops_service_stopping", service=service, backend=self.name)
        return self._started(service, lambda: self.backend.restart(service))
