"""A service's ``options.NAME`` sections, validated by the plugin that registered ``NAME``.

A registration may carry a pydantic model: ``register.add("systemd", factory,
options=lambda: SystemdOptions)`` (a callable, so the model is imported only when a config
is validated, never on the hot paths that read a cached one). The core validates every
``options.NAME`` section with the model of the registration of that name, of any kind, and
words each problem as the rest of the config's: ``services[0].options.systemd.scope: must
be one of 'auto', 'user' or 'system' (got 'galaxy')``. A section no installed plugin
claims is a warning: the config may be shared with hosts that have that plugin.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def option_models(host: Any) -> dict[str, Callable[[], type]]:
    """``NAME -> model loader`` for every registration that declares options."""
    from tts_ops.plugins import REGISTER_HOOKS

    models: dict[str, Callable[[], type]] = {}
    for kind in REGISTER_HOOKS:
        if kind == "registry":
            continue  # a registry's options are the discovery section's (discovery_problems)
        register = host.registrations(kind)
        for name in register.names():
            loader = register.get(name).info.get("options")
            if loader is not None:
                models[name] = loader
    return models


def option_problems(config: Any, models: dict[str, Callable[[], type]]
                    ) -> tuple[list[str], list[str]]:
    """(problems, warnings) of every service's ``options`` sections."""
    from pydantic import ValidationError

    from tts_ops.config.loader import clip, format_errors

    problems: list[str] = []
    warnings: list[str] = []
    for i, svc in enumerate(config.services):
        for name, raw in svc.options.items():
            where = f"services[{i}].options.{name}"
            load = models.get(name)
            if load is None:
                known = ", ".join(sorted(models)) or "none"
                warnings.append(clip(f"{where}: no installed plugin takes options named"
                                     f" {name!r} (plugins with options: {known})"))
                continue
            model = load()
            try:
                model.model_validate(raw)
            except ValidationError as exc:
                # the core's model made the section an object: every error names a field
                problems += [clip(f"{where}.{line}") for line in format_errors(model, exc)]
    return problems, warnings


def discovery_problems(config: Any, host: Any) -> list[str]:
    """Problems of the ``discovery`` keys that belong to the registry plugin it names."""
    from pydantic import ValidationError

    from tts_ops.config.loader import clip, format_errors
    from tts_ops.discovery.registry import registry_options

    settings = config.discovery
    extra = registry_options(settings)
    names = host.registrations("registry").names()
    if settings.registry not in names:
        return [clip(f"discovery.registry: no installed plugin provides the registry"
                     f" {settings.registry!r} (installed: {', '.join(sorted(names))}):"
                     " install it (e.g. pip install tts-ops-etcd) or use 'file'")]
    load = host.registrations("registry").get(settings.registry).info.get("options")
    if load is None:
        return [clip(f"discovery.{key}: not a field of the {settings.registry!r} registry"
                     " (it takes none beside path)") for key in extra]
    model = load()
    try:
        model.model_validate(extra)
    except ValidationError as exc:
        return [clip(f"discovery.{line}") for line in format_errors(model, exc)]
    return []
