"""The public API for plugin authors: what a plugin may import from tts-ops, and nothing else.

Stable: every name in ``__all__`` (import them from here: ``from tts_ops.plugin import
hookimpl, Register, ServiceStatus``), and the helper modules in `PUBLIC_MODULES`, which
the manual backend's small supervisor imports directly (they use only the standard
library). Every other module of the ``tts_ops`` package is private to the core and may
change in any release; an import-linter contract (``lint-imports``, run by the test
command) keeps the first-party plugins to this surface, as third-party ones should be.

Names load on first use (PEP 562), so importing this module costs nothing on the hot
paths of a command that does not use them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: helper modules that are public and stable, beside the names below
PUBLIC_MODULES = (
    "tts_ops.statefile",  # atomic, no-follow, private state files; flock
    "tts_ops.logwriter",  # the rotating log writer; claim_log_file
    "tts_ops.logread",  # tail and follow across rotation
    "tts_ops.procinfo",  # process identity (pid + start time), groups, usage
    "tts_ops.spawn",  # fork + exec with a new group, credentials, parent-death signal
    "tts_ops.cgroups",  # a cgroup v2 per service generation
    "tts_ops.health",  # http and tcp health checks
    "tts_ops.sockets",  # the service's shared listening socket: holder, fetch, release
    "tts_ops.testing",  # hosts, the CLI runner, conformance suites for plugin authors
    "tts_ops.prefetch",  # read-only queries the last same invocation ran, started early
)

_NAMES = {
    "hookimpl": "tts_ops",
    # registration
    "Register": "tts_ops.registry",
    "Registration": "tts_ops.registry",
    # process backends
    "BackendContext": "tts_ops.backend",
    "BackendEvent": "tts_ops.backend",
    "ProcessBackend": "tts_ops.backend",
    "ServiceStatus": "tts_ops.backend",
    "State": "tts_ops.backend",
    "Support": "tts_ops.backend",
    "CAPABILITIES": "tts_ops.backend",
    "EVENT_HOOKS": "tts_ops.backend",
    "StartFailed": "tts_ops.backend",
    "BackendUnavailable": "tts_ops.backend",
    "command_problem": "tts_ops.backend",
    # errors: one line and an exit code each
    "TtsOpsError": "tts_ops.errors",
    "ConfigError": "tts_ops.errors",
    "OperationFailed": "tts_ops.errors",
    "MissingComponent": "tts_ops.errors",
    "PluginError": "tts_ops.errors",
    # what each registration's factory returns, and a backend's optional parts
    "Strategy": "tts_ops.contracts",
    "LogSink": "tts_ops.contracts",
    "LiveFile": "tts_ops.contracts",
    "RegistryStore": "tts_ops.contracts",
    "EventSource": "tts_ops.contracts",
    "LogRotator": "tts_ops.contracts",
    "LogLocator": "tts_ops.contracts",
    "ChangeFeed": "tts_ops.contracts",
    "SharedRegistry": "tts_ops.contracts",
    "Router": "tts_ops.contracts",
    # routers
    "RouterServer": "tts_ops.routing",
    "RouterState": "tts_ops.routing",
    "ServerState": "tts_ops.routing",
    "ROUTER_ROLE_LABEL": "tts_ops.routing",
    # deploy strategies
    "DeployContext": "tts_ops.deploy.context",
    "DeployFailed": "tts_ops.deploy.context",
    # log sinks
    "FileSink": "tts_ops.logs.sinks",
    # what backends need of the core's config and discovery
    "ensure_writable_dir": "tts_ops.config.paths",
    "with_overrides": "tts_ops.config.models",  # a service under one environment's overrides
    "discovery_record": "tts_ops.discovery.autoregister",
    # registry stores
    "InstanceRecord": "tts_ops.discovery.record",
    "HEALTH": "tts_ops.discovery.record",
    "discovery_heartbeat": "tts_ops.discovery.beat",
    # heartbeats for a service whose process manager sends none (systemd, supervisord)
    "discovery_keeper": "tts_ops.discovery.keeper",
    "discovery_keeper_remove": "tts_ops.discovery.keeper",
    "discovery_keeper_argv": "tts_ops.discovery.keeper",
}
_RENAMED = {"discovery_record": "record_for", "discovery_heartbeat": "beat",
            "discovery_keeper": "prepare", "discovery_keeper_remove": "remove_spec",
            "discovery_keeper_argv": "keeper_argv",
            "ROUTER_ROLE_LABEL": "ROLE_LABEL"}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"tts_ops.plugin has no public name {name!r}")
    value = getattr(importlib.import_module(module), _RENAMED.get(name, name))
    globals()[name] = value  # next time, a plain lookup
    return value


def __dir__() -> list[str]:
    return sorted([*__all__, "PUBLIC_MODULES"])


if TYPE_CHECKING:  # what type checkers see: the same names, imported eagerly
    pass
