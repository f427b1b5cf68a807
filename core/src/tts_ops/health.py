"""Health checks (http, tcp, none), blocking, with a timeout. Standard library only."""

from __future__ import annotations

import http.client
import socket
from dataclasses import dataclass


@dataclass
class CheckResult:
    ok: bool
    detail: str


def check_http(url: str, timeout: float) -> CheckResult:
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    conn_cls = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    conn = conn_cls(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        resp.read(65536)
    except (OSError, http.client.HTTPException) as exc:
        return CheckResult(False, f"GET {url}: {_describe(exc)}")
    finally:
        conn.close()
    ok = 200 <= resp.status < 300
    return CheckResult(ok, f"GET {url}: HTTP {resp.status}")


def check_tcp(host: str, port: int, timeout: float) -> CheckResult:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return CheckResult(True, f"tcp {host}:{port}: connected")
    except OSError as exc:
        return CheckResult(False, f"tcp {host}:{port}: {_describe(exc)}")


def check_service(service) -> CheckResult:  # service: ServiceConfig
    hc = service.health_check
    if hc.type == "none":
        return CheckResult(True, "no health check")
    if hc.type == "tcp":
        host = "127.0.0.1" if service.host in ("0.0.0.0", "localhost") else service.host
        return check_tcp(host, service.port, hc.timeout)
    return check_http(service.health_url(), hc.timeout)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__
