"""A routed service's ``options.haproxy`` section.

``{"router": "haproxy", "options": {"haproxy": {"stats_port": 9101}}}``: HAProxy's own
Prometheus exporter (``/metrics``) and its stats page (``/``) on ``host:stats_port``.
"""

from __future__ import annotations

import resource

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

#: descriptors HAProxy needs beside two per connection (listeners, servers, logs, checks)
FD_MARGIN = 1024


def descriptor_limit() -> int:
    """How many descriptors HAProxy may raise itself to: the hard limit it inherits (2.6
    raises its soft limit only, root or not: "Cannot raise FD limit ..., limit is N")."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return hard if hard != resource.RLIM_INFINITY else 1 << 20


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

    @field_validator("maxconn")
    @classmethod
    def _fits_the_host(cls, value: int) -> int:
        # HAProxy needs two descriptors per connection and refuses to start without them
        most = max(16, (descriptor_limit() - FD_MARGIN) // 2)
        if value > most:
            raise PydanticCustomError(
                "maxconn", "{got} needs about {need} file descriptors and this host allows"
                " {limit}: use at most {most}", {"got": value, "need": 2 * value + FD_MARGIN,
                                                "limit": descriptor_limit(), "most": most})
        return value


def options_of(service) -> HaproxyOptions:
    """The service's validated section (the core validated it with the config)."""
    return HaproxyOptions.model_validate((service.options or {}).get("haproxy") or {})
