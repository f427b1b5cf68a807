"""The address other hosts reach this host's instances at, when the registry is shared.

A record in a shared registry (etcd) is read on every host: ``127.0.0.1`` in it sends the
reader to itself. The advertised address is ``discovery.advertise`` (an address of this
host, or the name of an interface whose address it takes); without it, the local address
of the route to the registry's first endpoint, as Consul and etcd pick theirs. A registry
of this host alone (the file registry) advertises nothing: its records keep loopback.

Per service: a service bound to one address of its own is reached there; one bound to a
wildcard (``0.0.0.0``, ``::``) is reached at the advertised address; the private ports of
its blue/green slots bind on the advertised address (never on a wildcard), so that the
records naming them can be followed from other hosts.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from tts_ops.errors import ConfigError

LOOPBACK = "127.0.0.1"
WILDCARDS = ("0.0.0.0", "", "::", "localhost")


def _local_addresses() -> dict[str, list[str]]:
    import psutil

    return {name: [a.address.split("%")[0] for a in addrs
                   if a.family in (socket.AF_INET, socket.AF_INET6)]
            for name, addrs in psutil.net_if_addrs().items()}


def resolve(value: str) -> str:
    """``discovery.advertise``: an address of this host, or an interface's first address
    (IPv4 first). Anything else: one line naming the field and what this host has."""
    interfaces = _local_addresses()
    try:
        address = str(ipaddress.ip_address(value))
    except ValueError:
        found = interfaces.get(value)
        if not found:
            names = ", ".join(sorted(interfaces))
            raise ConfigError(f"discovery.advertise: {value!r} is neither an address nor an"
                              f" interface of this host (interfaces: {names}): name one, or"
                              " leave it unset") from None
        return sorted(found, key=lambda a: ":" in a)[0]
    if not any(address in found for found in interfaces.values()):
        raise ConfigError(f"discovery.advertise: {address} is not an address of this host:"
                          " other hosts would be sent where nothing listens; name one of its"
                          " addresses or interfaces")
    return address


def route_source(host: str, port: int) -> str:
    """The local address this host's packets to ``host:port`` leave from (no packet is
    sent: connecting a UDP socket only asks the routing table)."""
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    except OSError as exc:
        raise ConfigError(f"discovery: cannot resolve the registry endpoint {host!r}"
                          f" ({exc}): set discovery.advertise to this host's address") from None
    with socket.socket(info[0], socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(info[4])
        except OSError as exc:
            raise ConfigError(f"discovery: no route to the registry endpoint {host}:{port}"
                              f" ({exc.strerror or exc}): set discovery.advertise to this"
                              " host's address") from None
        return str(sock.getsockname()[0])


def advertised(settings: Any) -> str | None:
    """This host's advertised address for ``settings`` (the ``discovery`` section), or None
    when the registry is this host's alone."""
    value = getattr(settings, "advertise", None)
    if value:
        return resolve(value)
    if getattr(settings, "registry", "file") == "file":
        return None
    extra = getattr(settings, "model_extra", None) or {}
    endpoints = extra.get("endpoints") or getattr(settings, "endpoints", None) or []
    if not endpoints:
        return None
    first = urlsplit(str(endpoints[0]))
    if not first.hostname:
        return None
    return route_source(first.hostname, first.port or 2379)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def reachable_host(service_host: str, advertise: str | None) -> str:
    """Where a record of a service bound to ``service_host`` sends its readers."""
    if service_host in WILDCARDS:
        if advertise:
            return advertise
        return "::1" if service_host == "::" else LOOPBACK
    return service_host


def private_host(service_host: str, advertise: str | None) -> str:
    """Where the private ports of a service's slots bind: loopback for a registry of this
    host alone; with a shared one, the service's own address, or the advertised one."""
    if advertise is None:
        return LOOPBACK
    if service_host in WILDCARDS or is_loopback(service_host):
        return advertise
    return service_host


def record_addresses(services: list[Any], advertise: str | None) -> dict[str, str]:
    """Per service, the host its records will carry (its slots' after a deploy)."""
    return {svc.name: private_host(svc.host, advertise) if svc.private_slots
            else reachable_host(svc.host, advertise) for svc in services}


def unreachable(services: list[Any], advertise: str | None) -> list[str]:
    """Services a shared registry would list at a loopback address: a warning each."""
    if advertise is None:
        return []
    return [f"{svc.name}: it listens on {svc.host} only, which the other hosts reading the"
            " shared registry cannot reach: set its host to an address of this host (or"
            " 0.0.0.0)" for svc in services
            if not svc.private_slots and is_loopback(reachable_host(svc.host, advertise))]


def machine_id() -> str:
    """This machine's id (systemd's ``/etc/machine-id``), shortened; the host name without
    one. Cloned VMs that kept one id still differ by state dir in the owner it goes into."""
    try:
        with open("/etc/machine-id", encoding="ascii") as fh:
            found = fh.read(64).strip()
    except (OSError, UnicodeDecodeError):
        found = ""
    if found.isalnum():
        return found[:12]
    return socket.gethostname()[:63]
