"""Generations and slots: where a new release runs while the old one still serves.

A service runs either under its own name (``plain``, as ``tts-ops start`` runs it) or as
a generation of slot services named ``NAME-blue`` / ``NAME-green`` (or ``NAME-blue-0`` ...
with N instances). A deploy always starts the new release in the idle generation. Slot
services carry labels that discovery turns into records ``NAME@blue`` of service ``NAME``.

Where slots listen:

* ``socket: inherit`` (the reference server): every slot serves the service's own address
  through the shared socket (`tts_ops.sockets`), and also a private port, free when the
  deploy chose it, for its health checks, its metrics and discovery: on loopback, or with
  a shared registry on the host's advertised address (`tts_ops.discovery.advertise`), so
  other hosts can follow its record. The ports and their host are kept with the
  generation, so ``status`` and ``stop`` find the same slots.
* ``router`` (HAProxy, `tts_ops.routing`): the router owns the service's address; every
  slot listens only on a private port, as with ``socket: inherit``.
* ``socket: none``: each slot binds its own port, ``blue`` on ``port .. port+N-1`` and
  ``green`` on ``port+N .. port+2N-1``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tts_ops.config.service import ADDRESS_LABEL
from tts_ops.config.service import OWNER_LABEL as SERVICE_LABEL
from tts_ops.statefile import atomic_write_json, read_json

SLOT_LABEL = "tts-ops/slot"
RELEASE_LABEL = "tts-ops/release"
WEIGHT_LABEL = "tts-ops/initial-weight"


def state_path(state_dir: Path, name: str) -> Path:
    return state_dir / "deploy" / f"{name}.json"


def active_generation(state_dir: Path, name: str) -> dict[str, Any]:
    try:
        data = read_json(state_path(state_dir, name))
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return {"generation": None, "release": None}
    if not valid_host(data.get("host")):
        data["host"] = None  # the loopback default: a state file never names a host to bind
    return data


def valid_host(value: Any) -> bool:
    """None, or an IP address: what a generation's private ports may bind on."""
    if value is None:
        return True
    import ipaddress

    try:
        ipaddress.ip_address(value)
    except (TypeError, ValueError):
        return False
    return True


def save_generation(state_dir: Path, name: str, generation: str | None,
                    release: str | None, ports: list[int] | None = None,
                    host: str | None = None) -> None:
    path = state_path(state_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"generation": generation, "release": release, "ports": ports,
                             "host": host})


def private_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` ports of ``host`` free right now (the kernel's choice, so no neighbour's)."""
    import socket

    held = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                                 socket.SOCK_STREAM)
            sock.bind((host, 0))
            held.append(sock)
        return [s.getsockname()[1] for s in held]
    finally:
        for sock in held:
            sock.close()


def slot_ports(services: list[Any]) -> list[int] | None:
    """The private ports of a generation's slots, as `save_generation` keeps them."""
    if not services or ADDRESS_LABEL not in services[0].labels:
        return None
    return [s.port for s in services]


def next_generation(active: str | None) -> str:
    return "blue" if active == "green" else "green" if active in ("plain", "blue") else "blue"


def slot_services(base: Any, generation: str, release_id: str | None, source: str | None,
                  initial_weight: int, ports: list[int] | None = None,
                  host: str | None = None) -> list[Any]:
    """The services that make up ``generation`` of ``base`` for one release.

    ``ports``: the private ports of a ``socket: inherit`` generation (chosen now if None),
    on ``host`` (None: loopback).
    """
    host = host or "127.0.0.1"
    n = base.instances
    if generation == "plain":
        if not release_id:
            return [base]
        labels = {**base.labels, RELEASE_LABEL: release_id}
        return [base.model_copy(update={"labels": labels,
                                        "env": {**base.env, "TTS_OPS_RELEASE": release_id}})]
    shared = base.shared_address()
    private = base.private_slots
    if private:
        chosen = list(ports) if ports and len(ports) == n else private_ports(n, host)
    else:
        first = base.port if generation == "blue" else base.port + n
        chosen = [first + i for i in range(n)]
    out = []
    for i in range(n):
        slot = generation if n == 1 else f"{generation}-{i}"
        port = chosen[i]
        labels = {**base.labels, SERVICE_LABEL: base.name, SLOT_LABEL: slot,
                  WEIGHT_LABEL: str(initial_weight)}
        if private:
            where = shared or (base.host, base.port)
            labels[ADDRESS_LABEL] = f"{where[0]}:{where[1]}"
        bind = host if private else base.host
        env = {**base.env, "TTS_OPS_SLOT": slot, "TTS_OPS_PORT": str(port), "TTS_OPS_HOST": bind,
               "TTS_OPS_INSTANCE": f"{base.name}@{slot}"}
        if release_id:
            labels[RELEASE_LABEL] = release_id
            env["TTS_OPS_RELEASE"] = release_id
        update: dict[str, Any] = {"name": f"{base.name}-{slot}", "port": port,
                                  "labels": labels, "env": env, "instances": 1,
                                  "pid_file": None}
        if private:
            update["host"] = host  # private: the service's address is the shared one
        if base.command is not None:
            update["command"] = base.command_at(port, bind)
        if base.log_file is not None:
            stem = base.log_file.name.removesuffix(".log")
            update["log_file"] = base.log_file.with_name(f"{stem}-{slot}.log")
        if source:
            update["working_dir"] = Path(source)
        out.append(base.model_copy(update=update))
    return out


def runtime_services(state_dir: Path, service: Any) -> list[Any]:
    """What runs for ``service`` now: itself, or the slots of the generation a deploy left.

    Slot configs come from the current release's snapshot (read without pydantic), so
    ``status`` and ``stop`` act on what was deployed, not on the edited config file.
    """
    state = active_generation(state_dir, service.name)
    generation = state["generation"]
    if generation in (None, "plain"):
        if not service.router:
            return [service]
        generation = "blue"  # a routed service always runs as slots behind its router
    from tts_ops.config.service import ServiceView
    from tts_ops.deploy.releases import ReleaseStore

    current = ReleaseStore(state_dir, service.name).current()
    base = ServiceView(current.config) if current is not None else service
    return slot_services(base, generation, current.id if current else None,
                         current.source if current else None, 100, state.get("ports"),
                         state.get("host"))


def claim_generation(state_dir: Path, service: Any, host: str | None = None) -> None:
    """Before a routed service's first start: its instances' private ports (on ``host``),
    kept so that ``status`` and ``stop`` find the same ``blue`` slots."""
    from tts_ops.statefile import locked

    path = state_path(state_dir, service.name)
    with locked(path.with_name(f".{service.name}.claim")):  # two starts at once: one choice
        if active_generation(state_dir, service.name)["generation"] is None:
            save_generation(state_dir, service.name, "blue", None,
                            private_ports(service.instances, host or "127.0.0.1"), host)


def port_warnings(services: list[Any]) -> list[str]:
    """Services whose blue/green slots (``socket: none``: ``port .. port+2N-1``) would land
    on another service's port: their deploys other than ``direct`` could not start."""
    own = {}
    for svc in services:
        if svc.uses_port:
            for port in range(svc.port, svc.port + svc.address_count):
                own[(svc.host, port)] = svc.name
    out = []
    for svc in services:
        if not svc.uses_port or svc.private_slots:
            continue
        clash = sorted({(port, own[(svc.host, port)])
                        for port in range(svc.port, svc.port + 2 * svc.instances)
                        if own.get((svc.host, port), svc.name) != svc.name})
        if clash:
            port, other = clash[0]
            out.append(f"{svc.name}: its blue/green slots use ports {svc.port}-"
                       f"{svc.port + 2 * svc.instances - 1}, and {port} is {other}'s: deploys"
                       " other than direct will fail; set \"socket\": \"inherit\" (the command"
                       " must accept LISTEN_FDS) or move the ports apart")
    return out
