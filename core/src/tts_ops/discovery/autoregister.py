"""Automatic registration: follow the service lifecycle hooks of every backend.

Ready: registered (passing, weight 100). Stopping: weight 0 before the stop signal, so
no client is sent to a draining instance. Stopped: deregistered. Exited or failed:
critical. The CLI registers one `AutoRegister` in its plugin host.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tts_ops.hookspecs import hookimpl

if TYPE_CHECKING:
    from tts_ops.discovery.record import InstanceRecord
    from tts_ops.runtime.core import Runtime

PLUGIN_NAME = "tts_ops.discovery.autoregister"


def record_for(service: Any, settings: Any, *, pid: int | None = None, backend: str = "",
               release: str | None = None, advertise: str | None = None,
               owner: str | None = None) -> InstanceRecord:
    """``advertise``: this host's advertised address (`tts_ops.discovery.advertise`), where
    a service bound to a wildcard is reached; None: loopback. ``owner``: which host and
    state dir registers it (``meta.owner``), so that two hosts given one node are told."""
    from tts_ops.discovery.advertise import reachable_host
    from tts_ops.discovery.record import InstanceRecord

    host = reachable_host(service.host, advertise)
    meta: dict[str, Any] = {"backend": backend}
    if pid:
        meta["pid"] = pid
    if owner:
        meta["owner"] = owner
    health_url = service.health_url()
    if health_url:
        meta["health_url"] = health_url.replace(f"//{service.host}:", f"//{host}:", 1)
    labels = dict(service.labels)
    weight = int(labels.get("tts-ops/initial-weight", 100))
    return InstanceRecord(id=record_id(service), service=labels.get("tts-ops/service",
                                                                     service.name),
                          host=host, port=service.port, service_type=settings.service_type,
                          weight=weight, labels=labels, ttl=settings.ttl,
                          release=release or labels.get("tts-ops/release"), meta=meta)


def record_id(service: Any) -> str:
    """``NAME``, or ``NAME@SLOT`` for the slot services a deploy runs."""
    return service.instance_id


class AutoRegister:
    """Bound to the `Runtime`; it opens the registry only when an event needs it.

    A registry that cannot be reached (an etcd outage, a full disk) never fails the
    command that started or stopped a service: one warning line says what discovery
    missed, and the heartbeats put it right when the registry is back.
    """

    def __init__(self, app: Runtime) -> None:
        self.app = app

    def _registry(self, service: Any = None):
        settings = self.app.config.discovery
        from tts_ops.routing import is_router_process

        if not settings.auto_register or (service is not None and is_router_process(service)):
            # the router's own process is not an instance of the service
            return None, settings
        return self.app.registry(), settings

    def _missed(self, service: Any, what: str, exc: Exception) -> None:
        import sys

        print(f"tts-ops: warning: {service.name}: {what} in discovery: {exc}", file=sys.stderr)

    @hookimpl
    def tts_ops_service_ready(self, service, backend, status) -> None:
        from tts_ops.errors import TtsOpsError

        try:
            registry, settings = self._registry(service)
            if registry is not None:
                registry.register_service(record_for(service, settings, pid=status.pid,
                                                     backend=backend,
                                                     release=status.extra.get("release"),
                                                     advertise=self.app.advertised,
                                                     owner=self.app.owner))
        except TtsOpsError as exc:
            self._missed(service, "not registered", exc)

    @hookimpl
    def tts_ops_service_stopping(self, service) -> None:
        from tts_ops.errors import TtsOpsError

        try:
            registry, _settings = self._registry(service)
            if registry is not None:
                registry.set_weight(record_id(service), 0)
        except TtsOpsError as exc:
            self._missed(service, "weight not set to 0", exc)

    @hookimpl
    def tts_ops_service_stopped(self, service) -> None:
        from tts_ops.errors import TtsOpsError

        try:
            registry, _settings = self._registry(service)
            if registry is not None:
                registry.deregister_service(record_id(service))
        except TtsOpsError as exc:
            self._missed(service, "not deregistered (its record expires with its ttl)", exc)

    @hookimpl
    def tts_ops_registry_changed(self, change) -> None:
        """Another host's instance changed: a ``router_scope: cluster`` router follows."""
        from tts_ops.errors import TtsOpsError
        from tts_ops.routing import follow_remote

        try:
            follow_remote(self.app, change)
        except TtsOpsError as exc:
            import sys

            print(f"tts-ops: warning: {change.get('service')}: the router did not follow"
                  f" {change.get('id')}: {exc}", file=sys.stderr)

    @hookimpl
    def tts_ops_service_exited(self, service) -> None:
        self._critical(service)

    @hookimpl
    def tts_ops_service_failed(self, service) -> None:
        self._critical(service)

    def _critical(self, service: Any) -> None:
        from tts_ops.errors import TtsOpsError

        try:
            registry, _settings = self._registry(service)
            if registry is not None and registry.get(record_id(service)) is not None:
                registry.set_health(record_id(service), "critical")
        except TtsOpsError as exc:
            self._missed(service, "not marked critical", exc)
