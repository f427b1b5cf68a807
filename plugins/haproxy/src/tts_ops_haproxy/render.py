"""``haproxy.cfg`` for one routed service: a pure function of the service and its servers.

Master-worker mode (the master re-executes itself on SIGUSR2 and hands the listening
sockets to the new worker: ``expose-fd listeners``), an admin socket in a 0700 directory,
readiness checks on every server, and every server with its weight, so a HAProxy that its
supervisor restarts serves exactly what the runtime API last set.
"""

from __future__ import annotations

import re
from pathlib import Path

from tts_ops.plugin import ConfigError, RouterServer
from tts_ops_haproxy.options import HaproxyOptions

FRONTEND = "tts"
BACKEND = "instances"
_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.:_-]{0,252}$")
_SERVER = re.compile(r"^[a-z][a-z0-9_.-]{0,62}$")


def address(host: str, port: int) -> str:
    """``host:port`` as HAProxy reads it (an IPv6 host is forced to IPv6)."""
    if not _HOST.match(host):
        raise ConfigError(f"host {host!r} cannot be written into haproxy.cfg: use an IP"
                          " address or a host name")
    return f"ipv6@{host}:{port}" if ":" in host else f"{host}:{port}"


def server_options(opts: HaproxyOptions, weight: int) -> str:
    """What every server line and ``add server`` command carry after the address."""
    inter = max(100, round(opts.check_interval * 1000))
    return f"weight {weight} check inter {inter} fall 2 rise 1"


def server_line(server: RouterServer, opts: HaproxyOptions) -> str:
    if not _SERVER.match(server.name):
        raise ConfigError(f"server name {server.name!r}: use a-z 0-9 . _ - (a slot name)")
    return (f"    server {server.name} {address(server.host, server.port)} "
            + server_options(opts, server.weight))


def render(service, servers: list[RouterServer], opts: HaproxyOptions, admin: Path) -> str:
    check = ("GET /ready" if service.command is None
             else f"GET {service.health_check.path}" if service.health_check.type == "http"
             else None)
    if opts.stats_port is not None and opts.stats_port == service.port:
        raise ConfigError(f"{service.name}: options.haproxy.stats_port: {opts.stats_port} is"
                          " the service's own port; choose another port for the stats")
    timeout_s = f"{opts.server_timeout:g}s"
    lines = [
        f"# written by tts-ops for service {service.name}: edits are overwritten",
        "global",
        "    master-worker",
        f"    stats socket {admin} mode 600 level admin expose-fd listeners",
        "    stats timeout 30s",
        f"    maxconn {opts.maxconn}",
        # a stop or a reload lets requests in flight finish, for at most the stop timeout
        f"    hard-stop-after {max(1, round(service.stop_timeout))}s",
        "    log stderr format short local0 warning",
        *_credentials(service),
        "",
        "defaults",
        "    mode http",
        "    log global",
        "    option http-keep-alive",
        # on a reload the old worker keeps its idle keep-alive connections until their next
        # request, answers it with "Connection: close", then closes: closing them at once
        # races a client sending a POST on one (an EOF it may not retry)
        "    option idle-close-on-response",
        "    option redispatch 1",
        "    retries 2",
        # a request that found an instance gone (it was stopped, it crashed) is sent to
        # another: no client sees the failure
        "    retry-on conn-failure empty-response",
        "    timeout connect 2s",
        "    timeout client 60s",
        f"    timeout server {timeout_s}",
        "    timeout http-keep-alive 60s",
        "    timeout http-request 30s",
        "    timeout queue 30s",
        "",
        f"frontend {FRONTEND}",
        f"    bind {address(service.host, service.port)}",
        f"    default_backend {BACKEND}",
        "",
        f"backend {BACKEND}",
        "    balance roundrobin",
    ]
    if check:
        lines += [f"    option httpchk {check}", "    http-check expect status 200"]
    lines += [server_line(s, opts) for s in servers]
    if opts.stats_port:
        lines += [
            "",
            "frontend stats",
            f"    bind {address(service.host, opts.stats_port)}",
            "    http-request use-service prometheus-exporter if { path /metrics }",
            "    stats enable",
            "    stats uri /",
            "    stats refresh 5s",
        ]
    return "\n".join(lines) + "\n"


def _credentials(service) -> list[str]:
    """The service's ``user`` for HAProxy's workers: the master binds the address and the
    admin socket, and stays to re-execute itself on a reload (as Debian's own haproxy
    runs); the workers that talk to clients drop to the user and its primary group."""
    if not service.user:
        return []
    import pwd

    try:
        entry = pwd.getpwnam(service.user)
    except KeyError:
        raise ConfigError(f"{service.name}: user {service.user!r}: no such user on this host;"
                          " create it, or drop the field") from None
    return [f"    uid {entry.pw_uid}", f"    gid {entry.pw_gid}"]


def frame(text: str) -> str:
    """The config without its server lines: what only a reload can change."""
    return "\n".join(line for line in text.splitlines() if not line.startswith("    server "))
