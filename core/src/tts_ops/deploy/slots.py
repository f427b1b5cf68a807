"""Generations and slots: where a new release runs while the old one still serves.

A service runs either under its own name (``plain``, as ``tts-ops start`` runs it) or as
a generation of slot services: ``blue`` on ``port .. port+N-1`` and ``green`` on
``port+N .. port+2N-1`` (N = instances), named ``NAME-blue`` (or ``NAME-blue-0`` ...).
A deploy always starts the new release in the idle generation. Slot services carry
labels that discovery turns into records ``NAME@blue`` of service ``NAME``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tts_ops.statefile import atomic_write_json, read_json

SERVICE_LABEL = "tts-ops/service"
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
    return data if isinstance(data, dict) else {"generation": None, "release": None}


def save_generation(state_dir: Path, name: str, generation: str | None,
                    release: str | None) -> None:
    path = state_path(state_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"generation": generation, "release": release})


def next_generation(active: str | None) -> str:
    return "blue" if active == "green" else "green" if active in ("plain", "blue") else "blue"


def slot_services(base: Any, generation: str, release_id: str | None, source: str | None,
                  initial_weight: int) -> list[Any]:
    """The services that make up ``generation`` of ``base`` for one release."""
    n = base.instances
    if generation == "plain":
        if not release_id:
            return [base]
        labels = {**base.labels, RELEASE_LABEL: release_id}
        return [base.model_copy(update={"labels": labels,
                                        "env": {**base.env, "TTS_OPS_RELEASE": release_id}})]
    first = base.port if generation == "blue" else base.port + n
    out = []
    for i in range(n):
        slot = generation if n == 1 else f"{generation}-{i}"
        port = first + i
        labels = {**base.labels, SERVICE_LABEL: base.name, SLOT_LABEL: slot,
                  WEIGHT_LABEL: str(initial_weight)}
        env = {**base.env, "TTS_OPS_SLOT": slot, "TTS_OPS_PORT": str(port)}
        if release_id:
            labels[RELEASE_LABEL] = release_id
            env["TTS_OPS_RELEASE"] = release_id
        update: dict[str, Any] = {"name": f"{base.name}-{slot}", "port": port,
                                  "labels": labels, "env": env, "instances": 1,
                                  "pid_file": None}
        if base.command is not None:
            update["command"] = [a.replace("{port}", str(port)) for a in base.command]
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
    generation = active_generation(state_dir, service.name)["generation"]
    if generation in (None, "plain"):
        return [service]
    from tts_ops.config.service import ServiceView
    from tts_ops.deploy.releases import ReleaseStore

    current = ReleaseStore(state_dir, service.name).current()
    base = ServiceView(current.config) if current is not None else service
    return slot_services(base, generation, current.id if current else None,
                         current.source if current else None, 100)
