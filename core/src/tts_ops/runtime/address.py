"""Where clients reach a service: its configured address, whatever slot serves it."""

from __future__ import annotations

from typing import Any


def address_of(svc: Any) -> str | None:
    """Where clients reach ``svc``: its service's shared address (a deploy's slot, behind
    a router or a shared socket), else its own ``host:port``."""
    if not getattr(svc, "uses_port", True):
        return None
    host, port = svc.shared_address() or (svc.host, svc.port)
    return join_address(host, port)


def join_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
