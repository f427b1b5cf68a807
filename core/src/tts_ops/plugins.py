"""The plugin host: the one place that builds the pluggy manager and calls hooks.

Built-in plugins load from an explicit tuple, then entry points of group ``tts_ops``
one at a time, so that one broken plugin is reported by name while the rest load.
``TTS_OPS_PLUGINS=a,b`` limits which entry-point plugins load (empty: none);
``TTS_OPS_TRACE_PLUGINS=1`` traces every hook call to stderr.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import pluggy

from tts_ops import hookspecs
from tts_ops.errors import PluginError
from tts_ops.registry import Register, Registration

BUILTIN_PLUGINS: tuple[str, ...] = ("tts_ops.builtins",)
ENV_LOAD = "TTS_OPS_PLUGINS"
ENV_TRACE = "TTS_OPS_TRACE_PLUGINS"

VALIDATION_HOOKS = frozenset({"tts_ops_validate_config", "tts_ops_predeploy_checks",
                              "tts_ops_verify_deploy"})

REGISTER_HOOKS = {
    "backend": "tts_ops_register_backends",
    "strategy": "tts_ops_register_strategies",
    "registry": "tts_ops_register_registries",
    "log_sink": "tts_ops_register_log_sinks",
    "command": "tts_ops_register_commands",
    "option": "tts_ops_register_options",
    "router": "tts_ops_register_routers",
}


@dataclass
class PluginInfo:
    name: str
    distribution: str | None
    version: str | None
    hooks: list[str] = field(default_factory=list)
    registers: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class PluginWarning:
    plugin: str
    distribution: str | None
    version: str | None
    error: str
    #: False for a hook that raised: the plugin stays loaded, only that call was skipped
    disabled: bool = True

    def message(self) -> str:
        where = f" ({self.distribution} {self.version})" if self.distribution else ""
        fix = (
            f"pip uninstall {self.distribution}, or exclude it with {ENV_LOAD}"
            if self.distribution
            else f"exclude it with {ENV_LOAD}"
        )
        if not self.disabled:
            return (f"plugin {self.plugin!r}{where}: {self.error}; the command carried on"
                    f" without it; to silence: {fix}")
        return f"plugin {self.plugin!r}{where} is disabled: {self.error}; to silence: {fix}"


class PluginHost:
    """Owns the pluggy manager. Code outside this class does not call ``pm.hook``."""

    def __init__(
        self,
        *,
        load_entrypoints: bool = True,
        builtins: tuple[str, ...] = BUILTIN_PLUGINS,
        plugins: tuple[object, ...] = (),
    ) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.warnings: list[PluginWarning] = []
        self._dists: dict[str, tuple[str | None, str | None]] = {}
        self._registers: dict[str, Register] = {}
        self._warned: set[str] = set()
        for modname in builtins:
            self.register(importlib.import_module(modname), name=modname)
        if load_entrypoints:
            self._load_entrypoints()
        for plugin in plugins:
            self.register(plugin)
        if os.environ.get(ENV_TRACE):
            self.pm.trace.root.setwriter(sys.stderr.write)
            self.pm.enable_tracing()

    # --- loading ---

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin object; a hook it implements that has no spec is an error."""
        registered = self.pm.register(plugin, name=name)
        assert registered is not None
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError:
            self.pm.unregister(name=registered)
            raise
        self._isolate(registered)
        self._registers.clear()
        return registered

    def _isolate(self, name: str) -> None:
        """Wrap each of the plugin's hook implementations, so that one that raises is
        reported with the plugin's name instead of breaking the call (pluggy then calls
        them, with its tracing, wrappers and firstresult). A validator that raises is a
        problem with the config, not a pass: validation fails closed."""
        plugin = self.pm.get_plugin(name)
        for caller in self.pm.get_hookcallers(plugin) or []:
            for impl in caller.get_hookimpls():
                if impl.plugin is not plugin or impl.wrapper or impl.hookwrapper:
                    continue
                impl.function = self._guard(caller.name, name, impl.function)  # type: ignore[misc]

    def _guard(self, hook: str, plugin: str, function: Any) -> Any:
        failing_closed = hook in VALIDATION_HOOKS

        def isolated(*args: Any, **kwargs: Any) -> Any:
            for arg in args:
                if isinstance(arg, Register):  # registrations are credited to this plugin
                    arg._for_plugin(plugin)
            try:
                return function(*args, **kwargs)
            except PluginError:
                raise
            except Exception as exc:
                if failing_closed:
                    return [f"plugin {plugin!r}: its {hook} raised {_describe(exc)}; the"
                            " config is refused until the plugin is fixed or disabled"
                            f" ({ENV_LOAD})"]
                self._warn_once(plugin, f"{hook} raised {_describe(exc)}", disabled=False)
                return None

        return isolated

    def _load_entrypoints(self) -> None:
        wanted = os.environ.get(ENV_LOAD)
        allow = None if wanted is None else {n.strip() for n in wanted.split(",") if n.strip()}
        from tts_ops.entrypoints import entry_points

        for ep in entry_points(hookspecs.PROJECT):
            if allow is not None and ep.name not in allow:
                continue
            if self.pm.has_plugin(ep.name):
                continue
            dist, version = ep.dist_name, ep.dist_version
            try:
                plugin = ep.load()
                self.register(plugin, name=ep.name)
            except Exception as exc:  # a broken plugin must not take the CLI down
                self.warnings.append(PluginWarning(ep.name, dist, version, _describe(exc)))
                continue
            self._dists[ep.name] = (dist, version)

    # --- registration hooks ---

    def registrations(self, kind: str) -> Register:
        """All implementations of one kind (``backend``, ``strategy``, ...), built once."""
        if kind not in self._registers:
            register = Register(kind)
            self.call(REGISTER_HOOKS[kind], register=register)
            self._registers[kind] = register
        return self._registers[kind]

    def lookup(self, kind: str, name: str) -> Registration:
        """The registration of ``name``, or an error listing the registered names.

        If a plugin failed to load, the error names it: it may be the one that
        would have provided ``name``.
        """
        register = self.registrations(kind)
        found = register.get(name)
        if found is not None:
            return found
        known = ", ".join(register.names()) or "none"
        broken = "".join(f"; {w.message()}" for w in self.warnings)
        hint = install_hint_for(kind, name)
        raise PluginError(f"no {kind} named {name!r} (registered: {known}){hint}{broken}")

    # --- events and validation ---

    def emit(self, hook_name: str, **kwargs: Any) -> None:
        """Call an event hook; an implementation that raises is reported, never fatal."""
        self.call(hook_name, **kwargs)

    def collect(self, hook_name: str, **kwargs: Any) -> list[str]:
        """Call a validation hook and flatten the problems every plugin returned."""
        problems: list[str] = []
        for result in self.call(hook_name, **kwargs):
            if result:
                problems.extend(str(p) for p in result)
        return problems

    def call(self, hook_name: str, **kwargs: Any) -> Any:
        """Call a hook through pluggy (each implementation isolated at registration)."""
        return getattr(self.pm.hook, hook_name)(**kwargs)

    def _warn_once(self, plugin: str, error: str, disabled: bool = True) -> None:
        dist, version = self._dists.get(plugin, (None, None))
        warning = PluginWarning(plugin, dist, version, error, disabled)
        self.warnings.append(warning)
        if plugin not in self._warned:
            self._warned.add(plugin)
            print(f"tts-ops: warning: {warning.message()}", file=sys.stderr)

    def validation_fingerprint(self) -> str:
        """Names and versions of the plugins that validate configs (for the config cache)."""
        impls = self.pm.hook.tts_ops_validate_config.get_hookimpls()
        parts = []
        for impl in impls:
            dist, version = self._dists.get(impl.plugin_name, (None, None))
            ident = f"{dist} {version}" if dist else f"in-process {id(impl.plugin)}"
            parts.append(f"{impl.plugin_name}={ident}")
        return ",".join(sorted(parts))

    # --- introspection ---

    def plugin_infos(self) -> list[PluginInfo]:
        """Every loaded plugin with its distribution, hooks and registrations, sorted."""
        for kind in REGISTER_HOOKS:
            self.registrations(kind)
        infos = []
        for name, plugin in self.pm.list_name_plugin():
            dist, version = self._dists.get(name, (None, None))
            if dist is None and (name in BUILTIN_PLUGINS or name.startswith("tts_ops.")):
                from tts_ops import __version__

                dist, version = "tts-ops", __version__
            hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
            registers = {
                kind: reg.by_plugin(name)
                for kind, reg in self._registers.items()
                if reg.by_plugin(name)
            }
            infos.append(PluginInfo(name, dist, version, hooks, registers))
        return sorted(infos, key=lambda i: i.name)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


#: the first-party distributions, only to name the one to install when a name is not
#: registered at all (nothing installed can say so): a documented default, never a decision
_KNOWN_DISTS = {
    ("backend", "manual"): "tts-ops-manual",
    ("backend", "systemd"): "tts-ops-systemd",
    ("backend", "supervisor"): "tts-ops-supervisor",
    ("strategy", "direct"): "tts-ops-strategies",
    ("strategy", "blue_green"): "tts-ops-strategies",
    ("strategy", "rolling"): "tts-ops-strategies",
    ("strategy", "canary"): "tts-ops-strategies",
    ("router", "haproxy"): "tts-ops-haproxy",
}


def install_hint_for(kind: str, name: str) -> str:
    dist = _KNOWN_DISTS.get((kind, name))
    if not dist:
        return ""
    from tts_ops.hints import install_hint

    return f"; install it with: {install_hint(dist)}"


def ensure_host_ok(host: PluginHost, plugin: str) -> None:
    """Fail with the plugin's own warning if ``plugin`` is the one that broke."""
    for w in host.warnings:
        if w.plugin == plugin:
            raise PluginError(w.message())
