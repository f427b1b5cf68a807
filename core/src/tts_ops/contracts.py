"""What a strategy, a log sink and a registry store must provide (process backends:
`tts_ops.backend.ProcessBackend`), and the optional parts of a backend, named.

Each registration hook's factory returns one of these; a type checker holds the
first-party ones to them (``tests/typing/contracts.py``, run by the test command) and
`tts_ops.testing.contracts` has a conformance suite per kind that third parties can run
against their own implementation, unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from tts_ops.backend import BackendEvent
    from tts_ops.config.models import ServiceConfig
    from tts_ops.deploy.context import DeployContext
    from tts_ops.discovery.record import InstanceRecord
    from tts_ops.routing import RouterServer, RouterState


@runtime_checkable
class Strategy(Protocol):
    """A deploy strategy: ``factory() -> Strategy`` (no arguments; one per deploy).

    ``same_slot``: the new release replaces the old in its own slot (direct) rather than
    starting beside it. ``initial_weight``: the discovery weight new instances start at.
    Optional ``splits_traffic = True``: both releases serve for a while (canary); the
    deploy's note on the address says what that means without a router.
    ``run`` starts, verifies and switches through the context and raises
    ``DeployFailed`` after restoring the old release; ``rollback`` undoes what ``run`` did
    so far (the engine calls it when ``run`` raised anything else, Ctrl-C included).
    """

    name: str
    same_slot: bool
    initial_weight: int

    def run(self, ctx: DeployContext) -> None: ...

    def rollback(self, ctx: DeployContext) -> None: ...


@runtime_checkable
class LogSink(Protocol):
    """Where a service's log lines are read from: ``factory(location) -> LogSink``, where
    ``location`` is what the backend's ``log_sink(service)`` returned beside the sink's
    name (the ``file`` sink: the service's log path)."""

    def lines(self, skip: Callable[[str], None]) -> Iterator[bytes]:
        """Every line kept, oldest first; ``skip(message)`` for a part it cannot read."""
        ...

    def follow(self, stop: Callable[[], bool]) -> Iterator[str]:
        """New lines as they come, until ``stop()`` is true."""
        ...


@runtime_checkable
class LiveFile(Protocol):
    """A sink whose newest lines are in one file that grows (``logs monitor`` follows it)."""

    def live(self) -> Path: ...


@runtime_checkable
class RegistryStore(Protocol):
    """Where discovery keeps instance records: ``factory(location) -> RegistryStore``.

    Every write is atomic and returns the change it made (``{"seq", "ts", "kind", "id",
    "service", "record"}``, kinds ``registered``, ``updated``, ``deregistered``,
    ``health``, ``weight``, ``stale_removed``), and every change is kept in order so that
    ``changes(since)`` lets a watcher in another process follow without missing one.
    ``last_seq()`` is a position at or after the last change (a shared store's revision
    may count writes of others): ``changes(last_seq())`` is empty until the next one.

    A store whose records expire by themselves once their heartbeats stop for ``ttl``
    (etcd leases) sets ``expires_records = True``: its ``cleanup`` has nothing to do, a
    record read back is alive (``last_heartbeat`` is the time of the read), and the
    conformance suite checks expiry in real time instead of with timestamps.
    """

    def register(self, record: InstanceRecord) -> dict[str, Any]: ...

    def deregister(self, rid: str) -> dict[str, Any] | None: ...

    def heartbeat(self, rid: str, *, health: str | None = None,
                  record: InstanceRecord | None = None, now: float | None = None
                  ) -> tuple[bool, dict[str, Any] | None]:
        """(found, change): a missing record is registered again when ``record`` is given;
        a change only when the health changed or the record had gone stale."""
        ...

    def update(self, rid: str, **fields: Any) -> dict[str, Any] | None:
        """Set ``weight``, ``health`` or ``release``; anything else is a ConfigError."""
        ...

    def cleanup(self, deregister_after: float, now: float | None = None
                ) -> list[dict[str, Any]]: ...

    def get(self, rid: str) -> InstanceRecord | None: ...

    def list(self, *, service: str | None = None, service_type: str | None = None
             ) -> list[InstanceRecord]:
        """Records ordered by id."""
        ...

    def beats(self) -> int: ...

    def last_seq(self, service: str | None = None) -> int: ...

    def changes(self, since: int, service: str | None = None) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


@runtime_checkable
class ChangeFeed(Protocol):
    """A registry store that pushes changes (an etcd watch) instead of being polled."""

    def follow(self, since: int, service: str | None, stop: Callable[[], bool]
               ) -> Iterator[dict[str, Any]]:
        """Changes after ``since`` as they happen, until ``stop()``; a lost connection is
        resumed from the last change delivered, none lost and none twice."""
        ...


@runtime_checkable
class SharedRegistry(Protocol):
    """A registry store that several hosts share: ids are qualified with the ``node``
    that runs the instance (``tts-a:web-1``; an id without one means this node's), and a
    deploy holds the store's lock of the service beside the host's own."""

    node: str

    def deploy_lock(self, service: str, holder: dict[str, Any]
                    ) -> AbstractContextManager[Any]: ...


# --- the optional parts of a process backend, each named here and checked by name ---


@runtime_checkable
class EventSource(Protocol):
    """A backend that keeps lifecycle events (``tts-ops events``, the views)."""

    def events(self, services: list[ServiceConfig], follow: bool = False, last: int | None = None,
               stop: Callable[[], bool] = ...) -> Iterator[BackendEvent]: ...


@runtime_checkable
class LogRotator(Protocol):
    """A backend that rotates a service's log on demand (``tts-ops logs rotate``)."""

    def rotate_logs(self, service: ServiceConfig) -> str: ...


@runtime_checkable
class LogLocator(Protocol):
    """A backend whose services log somewhere other than their ``log_file`` (the journal,
    supervisord's files): ``(sink name, location)``."""

    def log_sink(self, service: ServiceConfig) -> tuple[str, Any]: ...


@runtime_checkable
class Router(Protocol):
    """A traffic router in front of a service: ``factory(state_dir) -> Router``.

    Its frontend owns the service's ``host:port``; the instances are its servers
    (`tts_ops.routing.RouterServer`, named after their slots). Every change during a
    deploy is live: ``sync``, ``set_weights`` and ``drain`` never reload or restart it.
    """

    name: str

    def process(self, service: ServiceConfig) -> Any:
        """The service config of the router's own process for ``service`` (named
        ``NAME-router``), which the service's process backend runs."""
        ...

    def sync(self, service: ServiceConfig, servers: list[RouterServer]) -> bool:
        """Route to exactly ``servers`` (address and weight): write the config (checked
        first: a bad one raises and changes nothing) and, when the router runs, apply the
        difference live. True when more than the servers changed: `reload` is due."""
        ...

    def set_weights(self, service: ServiceConfig, weights: dict[str, int]) -> None:
        """Give servers (by name) new weights, 0-100, at once."""
        ...

    def drain(self, service: ServiceConfig, names: list[str], timeout: float) -> int:
        """Send no new request to ``names``; wait up to ``timeout`` for the requests they
        are serving to end. Returns how many were still in flight."""
        ...

    def status(self, service: ServiceConfig) -> RouterState:
        """The frontend and every server (state, check, weight, sessions, counters);
        ``running=False`` with a one-line ``detail`` when the router cannot be reached."""
        ...

    def reload(self, service: ServiceConfig, pid: int) -> None:
        """Reload the router running as ``pid`` with its config, without closing its
        listening socket or a connection in flight."""
        ...
