"""`Runtime`: the core's one object for a config and a state dir. It owns the plugin host,
the loaded config, the state dir, the backend choice, the registry and the routers, and
answers what runs for a service (`Runtime.service`). The CLI builds one per invocation
and is a thin shell over it; the deploy engine, journal recovery, routing, registration,
the orchestrator and the views take it. It imports no click.

Nothing here is imported by ``tts-ops --version``; each property does its own imports
so a command pays only for what it uses.
"""

from __future__ import annotations

import sys
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tts_ops.errors import ConfigError, MissingComponent, TtsOpsError

if TYPE_CHECKING:
    from tts_ops.backend import ProcessBackend
    from tts_ops.config.loader import LoadedConfig
    from tts_ops.config.models import ServiceConfig
    from tts_ops.plugins import PluginHost
    from tts_ops.runtime.model import Service



class Runtime:
    def __init__(
        self,
        *,
        config_path: str | None = None,
        state_dir: str | None = None,
        verbose: bool = False,
        debug: bool = False,
        host_factory: Any = None,
    ) -> None:
        self.config_path = config_path
        self.state_dir_option = state_dir
        self.verbose = verbose
        self.debug = debug
        self._host_factory = host_factory
        #: hot commands read a config that validated before from the state dir's cache;
        #: ``config validate`` and ``config show`` turn this off
        self.use_cache = True
        #: what the plugins' validators said of the config: it gates the commands that start
        #: or install something (`require_valid`), never stop, status or logs
        self.policy_problems: list[str] = []
        self.policy_enforced = False
        self._reported = False  # the interrupted deploys were said (once per command)
        self._backends: dict[str, ProcessBackend] = {}
        #: per backend, the values of the flags it registered (``--scope``): its own only
        self.backend_options: dict[str, dict[str, Any]] = {}
        self.backend_reasons: dict[str, str] = {}
        #: ``options.NAME`` sections no installed plugin claims (`config validate` shows them)
        self.option_warnings: list[str] = []
        self._routers: dict[str, Any] = {}

    # --- lazily built pieces ---

    @cached_property
    def host(self) -> PluginHost:
        if self._host_factory is not None:
            host = self._host_factory()
        else:
            from tts_ops.plugins import PluginHost

            host = PluginHost()
        for warning in host.warnings:
            print(f"tts-ops: warning: {warning.message()}", file=sys.stderr)
        from tts_ops.discovery.autoregister import PLUGIN_NAME, AutoRegister

        existing = host.pm.get_plugin(PLUGIN_NAME)
        if existing is None:
            host.register(AutoRegister(self), name=PLUGIN_NAME)
        else:  # a host shared between invocations (tests): follow this one
            existing.app = self
        return host

    def registry_location(self) -> Any:
        """The file registry's path, or the plugin's part of the discovery section."""
        settings = self.config.discovery
        if settings.registry == "file":
            return settings.path or str(self.state_dir / "registry.db")
        from tts_ops.discovery.registry import registry_options

        return registry_options(settings)

    @cached_property
    def _registry(self) -> Any:
        from tts_ops.discovery.registry import ServiceRegistry, open_named

        settings = self.config.discovery
        store = open_named(settings.registry, self.registry_location(), host=self.host)
        return ServiceRegistry(store=store, emit=self.host.emit,
                               deregister_after=settings.deregister_after,
                               weights=self._weights_file())

    def _weights_file(self) -> Path | None:
        """Where this host keeps the weights it set, with a shared registry (its records
        expire with their leases); None with the file registry (its records do not)."""
        if self.config.discovery.registry == "file":
            return None
        from tts_ops.discovery.weights import path_in

        return path_in(self.state_dir)

    def registry(self) -> Any:
        return self._registry

    @cached_property
    def advertised(self) -> str | None:
        """The address other hosts reach this host's instances at; None with a registry of
        this host alone (`tts_ops.discovery.advertise`)."""
        from tts_ops.discovery.advertise import advertised

        return advertised(self.config.discovery)

    @cached_property
    def node(self) -> str | None:
        """This host's node in a shared registry (``web-1``), or None with the file
        registry: the services it starts answer ``X-TTS-Instance: ID:NODE``."""
        if self.config.discovery.registry == "file":
            return None
        return getattr(self.registry().store, "node", None)

    @cached_property
    def owner(self) -> str | None:
        """Who registers this host's records in a shared registry: the machine (its
        ``/etc/machine-id``) and the state dir; None with the file registry."""
        if self.node is None:
            return None
        from tts_ops.discovery.advertise import machine_id

        return f"{machine_id()}:{self.state_dir}"

    def check_node(self, services: list[Any]) -> None:
        """Refuse to start instances on a node another host registers as: two hosts given
        one ``discovery.node`` (cloned machines) would overwrite each other's records
        without a word."""
        if self.owner is None:
            return
        from tts_ops.discovery.record import node_of
        from tts_ops.routing import is_router_process

        names = sorted({s.owner for s in services if not is_router_process(s)})
        try:
            records = [r for name in names
                       for r in self.registry().find_services(service=name)]
        except TtsOpsError:
            return  # the registry is down: the start says so itself
        for record in records:
            other = record.meta.get("owner")
            if node_of(record.id) == self.node and isinstance(other, str) \
                    and other != self.owner:
                raise ConfigError(
                    f"{record.id}: the shared registry has it from another host ({other[:200]});"
                    f" this host is {self.owner}: two hosts share discovery.node"
                    f" {self.node!r}: give each its own")

    def private_host(self, service: Any) -> str:
        """Where the private ports of ``service``'s slots bind."""
        from tts_ops.discovery.advertise import private_host

        return private_host(service.host, self.advertised)

    @cached_property
    def loaded(self) -> LoadedConfig:
        from tts_ops.config.loader import load_config

        cache_dir = self.state_dir / "cache" if self.use_cache else None
        loaded = load_config(self.config_path, cache_dir=cache_dir,
                             salt=self.host.validation_fingerprint())
        if loaded.from_cache:
            return loaded
        from tts_ops.config.models import strategy_problems

        registered = self.host.registrations("strategy").names()
        if registered:  # without a strategy plugin, deploy itself says which to install
            names = strategy_problems(loaded.config, registered)
            if names:
                lines = [f"{loaded.source}: {p}" for p in names]
                raise ConfigError(lines[0], problems=lines)
        from tts_ops.config.plugin_options import (
            deploy_problems,
            discovery_problems,
            option_models,
            option_problems,
            router_problems,
        )

        wrong, self.option_warnings = option_problems(loaded.config, option_models(self.host))
        wrong += discovery_problems(loaded.config, self.host)
        wrong += deploy_problems(loaded.config, self.host)
        wrong += router_problems(loaded.config, self.host)
        if wrong:
            lines = [f"{loaded.source}: {p}" for p in wrong]
            raise ConfigError(lines[0], problems=lines)
        problems = self.host.collect("tts_ops_validate_config", config=loaded.config)
        if problems:  # not cached: the validators are asked again next time
            self.policy_problems = [f"{loaded.source}: {p}" for p in problems]
            return loaded
        loaded.remember()
        return loaded

    def require_valid(self) -> None:
        """Refuse to start, deploy or install from a config a plugin's validator rejected.

        The validators are always asked here, cache or not: a policy may change its mind
        (a new rule, a file it reads) while the config stays the same.
        """
        self.policy_enforced = True
        loaded = self.loaded
        if loaded.from_cache:
            from tts_ops.config.loader import load_config

            fresh = load_config(self.config_path)
            self.policy_problems = [f"{fresh.source}: {p}" for p in self.host.collect(
                "tts_ops_validate_config", config=fresh.config)]
        if self.policy_problems:
            raise ConfigError(self.policy_problems[0], problems=self.policy_problems)

    @property
    def config(self) -> Any:
        return self.loaded.config

    @cached_property
    def state_dir(self) -> Path:
        from tts_ops.config.paths import trusted_state_dir

        return trusted_state_dir(self.state_dir_option)

    # --- services ---

    def services(self, names: tuple[str, ...], all_: bool) -> list[ServiceConfig]:
        config = self.config
        if all_ or (not names and len(config.services) == 1):
            return list(config.services)
        if not names:
            raise ConfigError(
                f"name a service or pass --all (services: {', '.join(config.names())})"
            )
        chosen = []
        for name in names:
            svc = config.get(name)
            if svc is None:
                raise ConfigError(unknown_service(name, config.names(), self.loaded.source))
            chosen.append(svc)
        return chosen

    def runtime(self, services: list[ServiceConfig]) -> list[Any]:
        """The services as they run: a deployed service runs as its active slots, and
        during a deploy also as the new generation it is starting (nothing is invisible)."""
        from tts_ops.deploy import journal
        from tts_ops.deploy.slots import runtime_services

        self.report_interrupted()
        deploying = set(journal.pending(self.state_dir))  # one listing, not a read per service
        out: list[Any] = []
        for svc in services:
            running = runtime_services(self.state_dir, svc)
            if svc.name in deploying:
                names = {r.name for r in running}
                running += [r for r in journal.in_flight(self.state_dir, svc.name, svc)
                            if r.name not in names]
            out += running
            if svc.router:  # its router is one more process of it: status and stop see it
                out.append(self.router(svc).process(svc))
        return out

    def statuses(self, services: list[Any], pm: str | None) -> list[Any]:
        """The backends' statuses of ``services`` in their order, each backend asked once."""
        from tts_ops.backend import BackendUnavailable

        rows = []
        for name, group in self.by_backend(services, pm).items():
            try:
                rows.extend(self.backend(name).status(group))
            except BackendUnavailable as exc:
                raise MissingComponent(f"{name}: {exc}") from None
        order = {svc.name: i for i, svc in enumerate(services)}
        rows.sort(key=lambda r: order.get(r.name, len(order)))
        return rows

    def service(self, name: str, pm: str | None = None) -> Service:
        """What runs for the configured service ``name``: its address, its generations
        (the serving one, and the next during a deploy) and their instances, its router.
        Reads only: it starts, stops and routes nothing."""
        from tts_ops.deploy import slots
        from tts_ops.routing import is_router_process
        from tts_ops.runtime.model import (
            Generation,
            Instance,
            Service,
            address_of,
            join_address,
        )
        from tts_ops.runtime.views import health_of

        configured = self.config.get(name)
        if configured is None:
            raise ConfigError(unknown_service(name, self.config.names(), self.loaded.source))
        processes = self.runtime([configured])
        statuses = {st.name: st for st in self.statuses(processes, pm)}
        serving = slots.active_generation(self.state_dir, name)["generation"] or "plain"
        if serving == "plain" and configured.router:
            serving = "blue"
        try:
            weights = {r.id: r.weight for r in self.registry().find_services(service=name)}
        except TtsOpsError:  # the registry is down: the rest is still known
            weights = {}
        router = None
        groups: dict[str, list[Instance]] = {}
        releases: dict[str, str | None] = {}
        for svc in processes:
            st = statuses.get(svc.name)
            instance = Instance(
                name=svc.name, id=svc.instance_id,
                private=join_address(svc.host, svc.port) if svc.port else None,
                state=str(st.state) if st else "unknown", pid=st.pid if st else None,
                health=health_of(st) if st else None,
                backend=st.backend if st else self.choose_backend(svc, pm),
                log_file=str(svc.log_file) if svc.log_file else None,
                weight=weights.get(svc.instance_id))
            if is_router_process(svc):
                router = instance
                continue
            slot = svc.labels.get(slots.SLOT_LABEL) or "plain"
            generation = slot.rsplit("-", 1)[0] if slot[-1:].isdigit() else slot
            groups.setdefault(generation, []).append(instance)
            releases.setdefault(generation, svc.labels.get(slots.RELEASE_LABEL))
        generations = tuple(Generation(g, releases[g], g == serving, tuple(found))
                            for g, found in groups.items())
        return Service(name=name, address=address_of(configured), generations=generations,
                       router=router)

    def router(self, svc: Any) -> Any:
        """The router of a routed service (`tts_ops.contracts.Router`)."""
        if svc.name not in self._routers:
            from tts_ops.routing import router_for

            self._routers[svc.name] = router_for(self.host, self.state_dir, svc)
        return self._routers[svc.name]

    def release_addresses(self, services: list[Any], pm: str | None,
                          every: bool = False) -> None:
        """After a stop: close the addresses tts-ops held for ``services`` (``socket:
        inherit`` when they started); with ``every``, also any holder left by a service no
        longer configured."""
        from tts_ops import sockets

        for svc in services:  # whatever its socket is now: the config may have changed
            self.backend(self.choose_backend(svc, pm)).release_socket(svc)
        if every:
            known = {s.name for s in services}
            left = []
            for name in sockets.holders(self.state_dir):
                if name in known:
                    continue
                if sockets.in_use(self.state_dir, name):
                    left.append(name)  # its processes serve: another config's service
                else:
                    sockets.release(self.state_dir, name)  # left by a service now gone
            if left:
                print(f"tts-ops: left {len(left)} address holder(s) of services not in this"
                      f" config alone, as processes still serve them ({', '.join(left)});"
                      " stop them with the config that names them", file=sys.stderr)

    def record_intent(self, services: list[Any], wanted: str) -> None:
        """What the operator wants of these services (see `tts_ops.intent`)."""
        from tts_ops import intent
        from tts_ops.config.paths import ensure_writable_dir

        ensure_writable_dir(self.state_dir)
        try:
            intent.record(self.state_dir, [s.name for s in services], wanted)
        except OSError as exc:
            from tts_ops.logwriter import DISK_ERRORS

            if wanted != intent.STOPPED or exc.errno not in DISK_ERRORS:
                raise
            # a full disk is when an operator stops things: the record only tells the
            # orchestration monitor not to start them again, so it must not prevent the stop
            import sys

            print(f"tts-ops: warning: cannot record that {', '.join(s.name for s in services)}"
                  f" was stopped ({exc.strerror}); the orchestration monitor may start it"
                  " again", file=sys.stderr)

    def recover_deploys(self, names: list[str] | None = None) -> int:
        """Finish (complete or reverse) deploys whose process died, of ``names`` or all;
        say so in one line each. Only commands that change state call this: a read-only
        one (`runtime`) reports them instead. Returns how many were finished."""
        from tts_ops.deploy import journal

        if not journal.pending(self.state_dir):
            return 0
        lines = journal.recover(self, names)
        for line in lines:
            print(f"tts-ops: {line}", file=sys.stderr)
        return len(lines)

    def report_interrupted(self) -> None:
        """Say, once, which deploys died unfinished; start, stop and route nothing."""
        if self._reported:
            return
        self._reported = True
        from tts_ops.deploy import journal

        if not journal.pending(self.state_dir):
            return
        for line in journal.interrupted(self.state_dir):
            print(f"tts-ops: {line}", file=sys.stderr)

    # --- backends ---

    def backend(self, name: str) -> ProcessBackend:
        if name not in self._backends:
            from tts_ops.backend import BackendContext
            from tts_ops.plugins import ensure_host_ok

            reg = self.host.lookup("backend", name)
            ensure_host_ok(self.host, reg.plugin)
            options: dict[str, Any] = dict(self.backend_options.get(name, {}))
            settings = self.config.discovery
            if settings.auto_register:
                # the manual backend's supervisors heartbeat through the same registry store
                options["discovery"] = _Discovery(
                    {"registry": settings.registry, "location": self.registry_location(),
                     "ttl": settings.ttl, "service_type": settings.service_type,
                     "weights": str(w) if (w := self._weights_file()) else None},
                    advertise=lambda: self.advertised, owner=lambda: self.owner)
            context = BackendContext(state_dir=self.state_dir, emit=self.host.emit,
                                     options=options)
            from tts_ops.lifecycle import Lifecycle

            self._backends[name] = Lifecycle(
                reg.factory(context), self.host.emit,
                lambda: {"TTS_OPS_NODE": self.node} if self.node else {})
        return self._backends[name]

    def choose_backend(self, service: ServiceConfig, choice: str | None) -> str:
        """The backend for ``service``: the flag, the config, the recorded one, or auto."""
        owner = service.owner
        if owner != service.name and self.config.get(owner) is not None:
            return self.choose_backend(self.config.get(owner), choice)  # a slot: its service's
        if choice and choice != "auto":
            self.backend_reasons[service.name] = f"the flag --process-manager {choice}"
            return choice
        if service.process_manager and service.process_manager != "auto":
            self.backend_reasons[service.name] = "process_manager in the config"
            return service.process_manager
        recorded = self.assignments().get(service.name)
        if recorded and choice != "auto":
            self.backend_reasons[service.name] = f"the record of its start with {recorded}"
            return recorded
        return self.detect_backend(service.name)

    def by_backend(self, services: list[Any], pm: str | None) -> dict[str, list[Any]]:
        """``services`` grouped by the backend each runs under, in their order."""
        groups: dict[str, list[Any]] = {}
        for svc in services:
            groups.setdefault(self.choose_backend(svc, pm), []).append(svc)
        return groups

    def argv(self) -> list[str]:
        """How to run another ``tts-ops`` command on the same config and state dir."""
        args = [sys.executable, "-m", "tts_ops"]
        if self.config_path:
            args += ["-c", str(self.config_path)]
        return [*args, "--state-dir", str(self.state_dir)]

    def detect_backend(self, service_name: str) -> str:
        registrations = self.host.registrations("backend")
        registered = registrations.names()
        tried = []
        for name in auto_order(registrations):
            ok, why = self.backend(name).available()
            if ok:
                self.backend_reasons[service_name] = f"auto: {why}"
                return name
            tried.append(f"{name}: {why}")
        if not registered:
            from tts_ops.hints import install_hint

            raise MissingComponent("no process backend is installed; install one with:"
                                   f" {install_hint('tts-ops-manual')}")
        raise MissingComponent("no process backend is usable (" + "; ".join(tried) + ")")

    def assignments(self) -> dict[str, str]:
        from tts_ops.statefile import read_json

        try:
            data = read_json(self.state_dir / "assignments.json")
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def record_backend(self, service: str, backend: str) -> None:
        from tts_ops.config.paths import ensure_writable_dir
        from tts_ops.statefile import atomic_write_json, locked, read_json

        ensure_writable_dir(self.state_dir)
        path = self.state_dir / "assignments.json"
        with locked(self.state_dir / ".assignments.lock"):
            try:
                data = read_json(path) or {}
            except ValueError:
                data = {}
            if data.get(service) != backend:
                data[service] = backend
                atomic_write_json(path, data)


def auto_order(registrations: Any) -> list[str]:
    """The backends ``process_manager: auto`` tries, in order: each registration's
    ``auto_order`` (lower first: a process manager that outlives tts-ops before one that
    needs none), then the rest by name. Decided by what each plugin registered, never by
    its name."""
    def key(name: str) -> tuple[int, str]:
        order = registrations.get(name).info.get("auto_order")
        return (order if isinstance(order, int) else 1000, name)

    return sorted(registrations.names(), key=key)


def unknown_service(name: str, known: list[str], source: str) -> str:
    import difflib  # only for a name that is wrong

    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f" (services: {', '.join(known)})"
    return f"unknown service {name!r} in {source}{hint}"


class _Discovery(dict):  # type: ignore[type-arg]
    """The ``discovery`` options a backend gets; ``advertise`` and ``owner`` are worked
    out when first read (a start writes them into its spec): ``status`` opens no
    registry for them."""

    def __init__(self, data: dict[str, Any], **lazy: Any) -> None:
        super().__init__(data)
        self._lazy = lazy

    def __missing__(self, key: str) -> Any:
        if key not in self._lazy:
            raise KeyError(key)
        value = self[key] = self._lazy.pop(key)()
        return value

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return self[key] if key in self or key in self._lazy else default

    def _resolve(self) -> None:
        for key in list(self._lazy):
            self[key]

    def __iter__(self) -> Any:
        self._resolve()
        return super().__iter__()

    def keys(self) -> Any:
        self._resolve()
        return super().keys()

    def items(self) -> Any:
        self._resolve()
        return super().items()

    def copy(self) -> dict[str, Any]:
        self._resolve()
        return dict(super().items())
