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
    # what runs for a service, whatever generation serves it, and the core object
    "Service": "tts_ops.runtime.model",
    "Generation": "tts_ops.runtime.model",
    "Instance": "tts_ops.runtime.model",
    "Runtime": "tts_ops.runtime.core",
    # what a backend is asked to run (a service, or one slot of a generation)
    "ServiceConfig": "tts_ops.config.models",
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
    from tts_ops import hookimpl as hookimpl
    from tts_ops.backend import (
        CAPABILITIES as CAPABILITIES,
    )
    from tts_ops.backend import (
        EVENT_HOOKS as EVENT_HOOKS,
    )
    from tts_ops.backend import (
        BackendContext as BackendContext,
    )
    from tts_ops.backend import (
        BackendEvent as BackendEvent,
    )
    from tts_ops.backend import (
        BackendUnavailable as BackendUnavailable,
    )
    from tts_ops.backend import (
        ProcessBackend as ProcessBackend,
    )
    from tts_ops.backend import (
        ServiceStatus as ServiceStatus,
    )
    from tts_ops.backend import (
        StartFailed as StartFailed,
    )
    from tts_ops.backend import (
        State as State,
    )
    from tts_ops.backend import (
        Support as Support,
    )
    from tts_ops.backend import (
        command_problem as command_problem,
    )
    from tts_ops.config.models import (
        ServiceConfig as ServiceConfig,
    )
    from tts_ops.config.models import (
        with_overrides as with_overrides,
    )
    from tts_ops.config.paths import (
        ensure_writable_dir as ensure_writable_dir,
    )
    from tts_ops.contracts import (
        ChangeFeed as ChangeFeed,
    )
    from tts_ops.contracts import (
        EventSource as EventSource,
    )
    from tts_ops.contracts import (
        LiveFile as LiveFile,
    )
    from tts_ops.contracts import (
        LogLocator as LogLocator,
    )
    from tts_ops.contracts import (
        LogRotator as LogRotator,
    )
    from tts_ops.contracts import (
        LogSink as LogSink,
    )
    from tts_ops.contracts import (
        RegistryStore as RegistryStore,
    )
    from tts_ops.contracts import (
        Router as Router,
    )
    from tts_ops.contracts import (
        SharedRegistry as SharedRegistry,
    )
    from tts_ops.contracts import (
        Strategy as Strategy,
    )
    from tts_ops.deploy.context import (
        DeployContext as DeployContext,
    )
    from tts_ops.deploy.context import (
        DeployFailed as DeployFailed,
    )
    from tts_ops.discovery.record import (
        HEALTH as HEALTH,
    )
    from tts_ops.discovery.record import (
        InstanceRecord as InstanceRecord,
    )
    from tts_ops.errors import (
        ConfigError as ConfigError,
    )
    from tts_ops.errors import (
        MissingComponent as MissingComponent,
    )
    from tts_ops.errors import (
        OperationFailed as OperationFailed,
    )
    from tts_ops.errors import (
        PluginError as PluginError,
    )
    from tts_ops.errors import (
        TtsOpsError as TtsOpsError,
    )
    from tts_ops.logs.sinks import (
        FileSink as FileSink,
    )
    from tts_ops.registry import (
        Register as Register,
    )
    from tts_ops.registry import (
        Registration as Registration,
    )
    from tts_ops.routing import (
        RouterServer as RouterServer,
    )
    from tts_ops.routing import (
        RouterState as RouterState,
    )
    from tts_ops.routing import (
        ServerState as ServerState,
    )
    from tts_ops.runtime.core import (
        Runtime as Runtime,
    )
    from tts_ops.runtime.model import (
        Generation as Generation,
    )
    from tts_ops.runtime.model import (
        Instance as Instance,
    )
    from tts_ops.runtime.model import (
        Service as Service,
    )
