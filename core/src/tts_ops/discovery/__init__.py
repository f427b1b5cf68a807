"""Service discovery: records, the embedded registry, the client, the health monitor.

The seed's API::

    registry = ServiceRegistry("registry.db")
    registry.register_service({"id": "tts-primary", "host": "127.0.0.1", "port": 9000})
    services = registry.find_services(service_type="text-to-speech", healthy_only=True)
    registry.cleanup_stale_services()
    TTSServiceDiscovery(registry).get_endpoint()
"""

from tts_ops.discovery.client import NoEndpoint, TTSServiceDiscovery
from tts_ops.discovery.monitor import ServiceHealthMonitor
from tts_ops.discovery.record import InstanceRecord
from tts_ops.discovery.registry import ServiceRegistry
from tts_ops.discovery.store import SqliteStore

__all__ = ["InstanceRecord", "NoEndpoint", "ServiceHealthMonitor", "ServiceRegistry",
           "SqliteStore", "TTSServiceDiscovery"]
