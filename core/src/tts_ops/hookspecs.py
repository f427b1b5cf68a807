"""The hook specifications: the public API between tts-ops and its plugins.

Every hook is prefixed `tts_ops_`. A plugin implements any subset of them with the
`hookimpl` marker and may accept any subset of a hook's arguments (pluggy passes
only the ones an implementation names). Hooks grow by gaining arguments, never by
being replaced.

Three families:

* registration hooks (`tts_ops_register_*`) are called once when the plugin host is
  built; they add named implementations of core protocols to a `Register`;
* event hooks (`tts_ops_service_*`, `tts_ops_deploy_*`, `tts_ops_registry_changed`,
  `tts_ops_alert`) are called after something happened; an exception in one
  implementation is logged and reported, never blocks the operation or the other
  implementations;
* validation hooks (`tts_ops_validate_config`, `tts_ops_predeploy_checks`) return
  problems that are reported together with the core's own.

`docs/plugins/hooks.md` documents each hook with an example; a test fails when a
hook defined here is missing there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from tts_ops.backend import ServiceStatus
    from tts_ops.config.models import ServiceConfig, TtsOpsConfig
    from tts_ops.registry import Register

PROJECT = "tts_ops"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- registration ---------------------------------------------------------


@hookspec
def tts_ops_register_backends(register: Register) -> None:
    """Register process backends.

    Called once, when the plugin host is first asked for backends.

    :param register: call ``register.add(name, factory)`` for each backend. ``factory``
        is called with a :class:`tts_ops.backend.BackendContext` and returns an object
        that implements :class:`tts_ops.backend.ProcessBackend`. A name registered by
        two plugins is an error naming both.
    :returns: nothing.
    """


@hookspec
def tts_ops_register_strategies(register: Register) -> None:
    """Register deploy strategies (``direct``, ``blue_green``, ...).

    Called once, when the deploy engine first looks up a strategy.

    :param register: call ``register.add(name, factory)``; ``factory()`` takes no
        arguments and returns a `tts_ops.plugin.Strategy` (one per deploy).
    :returns: nothing.
    """


@hookspec
def tts_ops_register_registries(register: Register) -> None:
    """Register service-discovery registry backends.

    Called once, when discovery first opens a registry.

    :param register: call ``register.add(name, factory, options=loader)``;
        ``factory(location)`` returns a `tts_ops.plugin.RegistryStore`. ``location`` is a
        ``NAME://...`` URL (``ServiceRegistry("etcd://...")``), or, from a config whose
        ``discovery.registry`` is ``name``, the section's other keys validated by the
        pydantic model ``loader()`` returns (the ``file`` registry: its path).
    :returns: nothing.
    """


@hookspec
def tts_ops_register_log_sinks(register: Register) -> None:
    """Register log sinks: readers (and writers) of a service's log records.

    Called once, when a ``tts-ops logs`` command first needs a sink.

    :param register: call ``register.add(name, factory)``; ``factory(location)`` is
        called with what the backend's ``log_sink(service)`` returned beside the sink's
        name (the ``file`` sink: the log path) and returns a `tts_ops.plugin.LogSink`.
    :returns: nothing.
    """


@hookspec
def tts_ops_register_commands(register: Register) -> None:
    """Register ``tts-ops`` subcommands: ``register.add("router", factory)``, where
    ``factory()`` returns a click command or group named as registered.

    Called only when a command that is not the core's is asked for, or the commands are
    listed (``--help``, completion): the core's own commands never load plugins for it.
    A registered name that is a core command is never used. The command receives the
    CLI's context object (``@click.pass_obj``) and ``-c``, ``--state-dir``, ``-v`` and
    ``--debug`` on every leaf command, as the core's commands do.

    :param register: call ``register.add(name, factory)``.
    :returns: nothing.
    """


@hookspec
def tts_ops_register_options(register: Register) -> None:
    """Register flags of a backend on the core's service commands (every command that
    takes ``--process-manager``: start, stop, status, deploy, ...):
    ``register.add("scope", factory, backend="systemd")``, where ``factory()`` returns a
    `click.Option` (``--scope``, its type and help). Its value reaches that backend, and
    only it, as ``context.options[key]`` (``key=`` in the registration, default the
    name), overriding the config's ``options.<backend>.<key>`` for this invocation.

    Called when one of those commands is built: they load the plugins anyway.

    :param register: call ``register.add(name, factory, backend=..., key=...)``.
    :returns: nothing.
    """


@hookspec
def tts_ops_register_routers(register: Register) -> None:
    """Register traffic routers, named by a service's ``router`` field (``"haproxy"``).

    Called once, when a routed service is started, stopped, deployed or shown, or a
    config is validated.

    :param register: call ``register.add(name, factory, options=loader)``;
        ``factory(state_dir)`` returns a `tts_ops.plugin.Router`; ``loader()``, if given,
        returns the pydantic model of the service's ``options.<name>`` section.
    :returns: nothing.
    """


# --- events ---------------------------------------------------------------


@hookspec
def tts_ops_service_started(service: ServiceConfig, backend: str, status: ServiceStatus) -> None:
    """A service process was spawned (it may not be ready yet).

    :param service: the validated config of the service.
    :param backend: the name of the process backend that started it.
    :param status: its status right after the spawn.
    """


@hookspec
def tts_ops_service_ready(service: ServiceConfig, backend: str, status: ServiceStatus) -> None:
    """A service became ready: it said ``READY=1``, or its health check first passed.

    Called by the CLI when ``start`` returns successfully, and by monitors that see a
    restarted service become ready again. Discovery registers the instance here.

    :param service: the validated config of the service.
    :param backend: the backend name.
    :param status: its status, with ``pid`` and ``ready=True``.
    """


@hookspec
def tts_ops_service_stopping(service: ServiceConfig, backend: str) -> None:
    """A service is about to be sent its stop signal.

    Called before the signal, so that discovery can take the instance out of rotation
    before it starts draining.
    """


@hookspec
def tts_ops_service_stopped(service: ServiceConfig, backend: str, status: ServiceStatus) -> None:
    """A service was stopped on request and no process of it is left."""


@hookspec
def tts_ops_service_failed(
    service: ServiceConfig, backend: str, status: ServiceStatus, reason: str
) -> None:
    """A service failed: it did not become ready, exhausted its restarts, or cannot run.

    :param reason: one line saying why (e.g. ``exited 3 times within 60s``).
    """


@hookspec
def tts_ops_service_exited(
    service: ServiceConfig, backend: str, status: ServiceStatus, exit_code: int | None,
    exit_signal: int | None,
) -> None:
    """A service's process exited without being asked to (a crash, a kill, exit 0).

    Seen by whatever follows the backend's events (``tts-ops events``, monitors).

    :param exit_code: its exit code, or None when a signal killed it.
    :param exit_signal: the signal that killed it, or None.
    """


@hookspec
def tts_ops_service_restarted(service: ServiceConfig, backend: str, status: ServiceStatus) -> None:
    """A supervisor restarted a service after an unexpected exit."""


@hookspec
def tts_ops_service_health_changed(
    service: ServiceConfig, instance: str, old: str, new: str, detail: str
) -> None:
    """The health of an instance changed.

    :param instance: the instance id (service name, or name plus slot).
    :param old: previous health: ``passing``, ``warning``, ``critical`` or ``unknown``.
    :param new: new health.
    :param detail: what the last check saw (status code, error).
    """


@hookspec
def tts_ops_deploy_started(deploy: dict[str, Any]) -> None:
    """A deploy started. ``deploy`` holds ``id, services, strategy, environment``."""


@hookspec
def tts_ops_deploy_step(deploy: dict[str, Any], step: str, ok: bool, duration_s: float) -> None:
    """A deploy phase finished. ``step`` names it (``validate``, ``start_new``, ...)."""


@hookspec
def tts_ops_deploy_finished(deploy: dict[str, Any], result: str, duration_s: float) -> None:
    """A deploy finished. ``result`` is ``deployed``, ``rolled_back`` or ``failed``."""


@hookspec
def tts_ops_traffic_switched(service: ServiceConfig, weights: dict[str, int]) -> None:
    """A deploy changed how traffic is split between a service's instances.

    Called right after the discovery weights were set, so that a router (an nginx
    plugin, a load balancer) follows the same switch.

    :param service: the service being deployed.
    :param weights: instance id (``NAME@blue`` ...) to weight (0-100).
    """


@hookspec
def tts_ops_verify_deploy(service: ServiceConfig, url: str) -> list[str] | None:
    """Post-deployment verification of a new instance, after its health check passed.

    :param service: the new instance's service config (a slot of the deployed service).
    :param url: its base URL, e.g. ``http://127.0.0.1:9001``.
    :returns: problems, one line each (any problem fails the deploy), or ``None``.
    """


@hookspec
def tts_ops_registry_changed(change: dict[str, Any]) -> None:
    """A discovery record changed: fired by the process that changed it, and, for another
    host's instance in a shared registry (etcd), by ``tts-ops discovery watch`` on this host.

    :param change: ``{"kind": "registered"|"deregistered"|"health"|"weight"|"stale_removed",
        "id": ..., "service": ..., "record": {...}}``.
    """


@hookspec
def tts_ops_alert(alert: dict[str, Any]) -> None:
    """A monitor raised an alert.

    :param alert: ``{"service", "kind", "message", "value", "threshold", "ts"}``.
    """


# --- validation -----------------------------------------------------------


@hookspec
def tts_ops_validate_config(config: TtsOpsConfig) -> list[str] | None:
    """Add problems to config validation (``tts-ops config validate`` and every command).

    Called after the core's own validation passed.

    :param config: the validated config.
    :returns: problems as ``dotted.path: message`` strings, or ``None``.
    """


@hookspec
def tts_ops_predeploy_checks(
    config: TtsOpsConfig, services: list[ServiceConfig], environment: str
) -> list[str] | None:
    """Add problems to the pre-deployment checks of ``tts-ops deploy``.

    :param services: the services about to be deployed.
    :param environment: ``development``, ``staging`` or ``production``.
    :returns: problems, one line each, or ``None``.
    """
