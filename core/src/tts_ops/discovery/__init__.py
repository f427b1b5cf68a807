"""Service discovery: records, the embedded registry, the client, the health monitor.

The seed's API::

    registry = ServiceRegistry("registry.db")
    registry.register_service({"id": "tts-primary", "host": "127.0.0.1", "port": 9000})
    services = registry.find_services(service_type="text-to-speech", healthy_only=True)
    registry.cleanup_stale_services()
    TTSServiceDiscovery(registry).get_endpoint()

Names resolve lazily: every ``tts-ops`` command imports the auto-registration plugin from
this package, and must not pay for sqlite3, http.client and a thread pool it may not use.
"""

from __future__ import annotations

from typing import Any

_WHERE = {
    "InstanceRecord": "tts_ops.discovery.record",
    "NoEndpoint": "tts_ops.discovery.client",
    "ServiceHealthMonitor": "tts_ops.discovery.monitor",
    "ServiceRegistry": "tts_ops.discovery.registry",
    "SqliteStore": "tts_ops.discovery.store",
    "TTSServiceDiscovery": "tts_ops.discovery.client",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'tts_ops.discovery' has no attribute {name!r}")
