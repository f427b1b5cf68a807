"""A routed service's ``options.haproxy`` section.

``{"router": "haproxy", "options": {"haproxy": {"stats_port": 9101}}}``: HAProxy's own
Prometheus exporter (``/metrics``) and its stats page (``/``) on ``host:stats_port``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class HaproxyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: HAProxy's Prometheus exporter and stats page on the service's host; None: off
    stats_port: int | None = Field(default=None, ge=1, le=65535)
    #: how often each instance's readiness (``GET /ready``) is checked
    check_interval: float = Field(default=1.0, ge=0.1, le=60)
    #: how long a request may wait for an instance's answer (long texts take a while)
    server_timeout: float = Field(default=120.0, ge=1, le=3600)
    #: connections the frontend accepts at once
    maxconn: int = Field(default=4096, ge=16, le=1_000_000)


def options_of(service) -> HaproxyOptions:
    """The service's validated section (the core validated it with the config)."""
    return HaproxyOptions.model_validate((service.options or {}).get("haproxy") or {})
