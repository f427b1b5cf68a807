"""The spec a supervisor reads: everything about one service, resolved by the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tts_ops.plugin import ROUTER_ROLE_LABEL


def build_spec(service: Any, state_dir: Path, discovery: dict[str, Any] | None = None
               ) -> dict[str, Any]:
    """Turn a validated ServiceConfig into the plain JSON the supervisor needs."""
    hc = service.health_check
    registry = None
    if discovery and service.labels.get(ROUTER_ROLE_LABEL) != "router":  # not an instance
        from dataclasses import asdict
        from types import SimpleNamespace

        from tts_ops.plugin import discovery_record as record_for

        record = record_for(service, SimpleNamespace(**discovery), backend="manual",
                            advertise=discovery.get("advertise"),
                            owner=discovery.get("owner"))
        registry = {"name": discovery["registry"], "location": discovery["location"],
                    "record": asdict(record), "weights": discovery.get("weights"),
                    "interval": max(1.0, discovery["ttl"] / 3)}
    return {
        "registry": registry,
        "name": service.name,
        "argv": service.argv(),
        "env": dict(service.env),
        "working_dir": str(service.working_dir) if service.working_dir else None,
        "user": service.user,
        "notify": service.speaks_notify,
        "health": {
            "type": hc.type,
            "host": service.host,
            "port": service.port,
            "path": hc.path,
            "url": hc.url,
            "timeout": hc.timeout,
        },
        "health_interval": service.health_check_interval,
        "unhealthy_threshold": service.unhealthy_threshold,
        "restart_on_unhealthy": service.restart_on_unhealthy,
        "start_timeout": service.start_timeout,
        "start_seconds": service.start_seconds,
        "watchdog_sec": service.watchdog_sec,
        "restart_delay": service.restart_delay,
        "restart_backoff": service.restart_backoff,
        "restart_delay_max": service.restart_delay_max,
        "restart_window": service.restart_window,
        "max_restarts": service.max_restarts,
        "permanent_exit_codes": list(service.permanent_exit_codes),
        "stop_signal": service.stop_signal,
        "stop_timeout": service.stop_timeout,
        "log_file": str(service.log_path(state_dir)),
        "log_max_bytes": service.log_max_bytes,
        "log_backups": service.log_backups,
        "pid_file": str(service.pid_file) if service.pid_file else None,
    }
