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
        if kind in ("registry", "strategy"):
            continue  # their options are the discovery section's and deploy.<strategy>
        register = host.registrations(kind)
        for name in register.names():
            info = register.get(name).info
            loader = info.get("options")
            if loader is not None:  # ``section=``: a command's section named otherwise
                models[info.get("section", name)] = loader
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


def deploy_problems(config: Any, host: Any) -> list[str]:
    """Problems of each service's ``deploy.<strategy>`` sections: a key the core does not
    know must name a strategy whose registration carries an options model, and its
    section must pass that model."""
    import difflib

    from pydantic import ValidationError

    from tts_ops.config.loader import clip, format_errors
    from tts_ops.config.models import DeploySettings

    register = host.registrations("strategy")
    if not register.names():  # no strategy plugin: deploy itself says which to install
        return []
    models = {n: register.get(n).info["options"] for n in register.names()
              if register.get(n).info.get("options") is not None}
    core = set(DeploySettings.model_fields)
    problems = []

    def fields(strategy: str) -> set[str]:
        return set(getattr(models[strategy](), "model_fields", {}))

    for i, svc in enumerate(config.services):
        for key, raw in _sections(svc.deploy).items():
            where = f"services[{i}].deploy.{key}"
            if key not in models:
                owner = next((n for n in sorted(models) if key in fields(n)), None)
                if owner is not None:  # a strategy's setting written beside the core's
                    problems.append(clip(f"{where}: a setting of the {owner!r} strategy:"
                                         f" write it as deploy.{owner}.{key}"))
                    continue
                close = difflib.get_close_matches(key, sorted(core | set(models)), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                problems.append(clip(f"{where}: unknown key{hint} (a strategy's own settings"
                                     " go under deploy.<its name>)"))
                continue
            model = models[key]()
            try:
                model.model_validate(raw)
            except ValidationError as exc:
                problems += [clip(f"{where}.{line}") for line in format_errors(model, exc)]
    return problems


def strategy_options(service: Any, name: str, host: Any) -> Any:
    """``deploy.<name>`` of ``service`` validated by the strategy's model (its defaults
    when the section is absent), or None for a strategy without options."""
    found = host.registrations("strategy").get(name)
    load = found.info.get("options") if found is not None else None
    if load is None:
        return None
    return load().model_validate(_sections(service.deploy).get(name) or {})


def _sections(deploy: Any) -> dict[str, Any]:
    """The keys of ``deploy`` the core's model does not declare, as they were read (a JSON
    dump would turn a NaN into null and hide it from the strategy's model). A cached
    config's view has no extras apart: it holds only what already passed."""
    extra = getattr(deploy, "model_extra", None)
    if extra is not None:
        return dict(extra)
    from tts_ops.config.models import DeploySettings

    return {k: v for k, v in deploy.model_dump().items() if k not in DeploySettings.model_fields}


def router_problems(config: Any, host: Any) -> list[str]:
    """A ``router`` that no installed plugin registers: which are, and what to install."""
    routed = [(i, svc.router) for i, svc in enumerate(config.services) if svc.router]
    if not routed:
        return []
    from tts_ops.plugins import install_hint_for

    registered = host.registrations("router").names()
    return [f"services[{i}].router: no router named {name!r} (registered:"
            f" {', '.join(registered) or 'none'}){install_hint_for('router', name)}"
            for i, name in routed if name not in registered]
