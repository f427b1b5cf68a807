"""The dependency graph: services, external dependencies, edges with conditions, phases.

Edges come from each service's ``depends_on`` and from the seed's orchestration file
(``dependent`` names the service that waits; without it, every service waits). A
dependency that is not a configured service is *external* and needs a
``health_check_url``. Cycles and unknown names are validation errors.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from tts_ops.errors import ConfigError


@dataclass(frozen=True)
class Edge:
    dependent: str
    dependency: str
    required: bool
    condition: str
    timeout: float
    url: str | None
    external: bool


@dataclass
class Graph:
    services: dict[str, Any]
    edges: list[Edge] = field(default_factory=list)
    phases: list[list[str]] = field(default_factory=list)

    def deps_of(self, name: str) -> list[Edge]:
        return [e for e in self.edges if e.dependent == name]

    def externals(self) -> dict[str, str | None]:
        return {e.dependency: e.url for e in self.edges if e.external}


def build(config: Any, orchestration: Any | None = None, source: str = "config") -> Graph:
    services = {s.name: s for s in config.services}
    names = list(services)
    edges: list[Edge] = []
    problems: list[str] = []

    def add(where: str, dependent: str, dep: Any) -> None:
        target = dep.service_name
        if target == dependent:
            problems.append(f"{where}: {dependent!r} cannot depend on itself")
            return
        external = target not in services
        if external and not dep.health_check_url:
            close = difflib.get_close_matches(target, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else (
                "; give it a health_check_url to make it an external dependency")
            problems.append(f"{where}.service_name: unknown service {target!r}{hint}")
            return
        if external and dep.condition in ("started", "completed"):
            problems.append(f"{where}.condition: {dep.condition!r} needs a configured service;"
                            f" {target!r} is external (use healthy)")
            return
        edges.append(Edge(dependent, target, dep.dependency_type == "required", dep.condition,
                          dep.timeout, dep.health_check_url, external))

    for i, svc in enumerate(config.services):
        for j, dep in enumerate(svc.depends_on):
            add(f"services[{i}].depends_on[{j}]", svc.name, dep)
    if orchestration is not None:
        for i, dep in enumerate(orchestration.dependencies):
            where = f"dependencies[{i}]"
            if dep.dependent is not None:
                if dep.dependent not in services:
                    close = difflib.get_close_matches(dep.dependent, names, n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    problems.append(f"{where}.dependent: unknown service {dep.dependent!r}{hint}")
                    continue
                add(where, dep.dependent, dep)
            else:
                for name in names:
                    if name != dep.service_name:
                        add(where, name, dep)
    if problems:
        lines = [f"{source}: {p}" for p in problems]
        raise ConfigError(lines[0], problems=lines)
    graph = Graph(services, edges)
    graph.phases = _phases(graph, source)
    return graph


def _phases(graph: Graph, source: str) -> list[list[str]]:
    """Kahn's algorithm over configured services; a cycle is reported as a -> b -> a."""
    internal = [e for e in graph.edges if not e.external]
    waiting = {name: {e.dependency for e in internal if e.dependent == name}
               for name in graph.services}
    phases: list[list[str]] = []
    done: set[str] = set()
    while len(done) < len(waiting):
        ready = sorted(n for n, deps in waiting.items() if n not in done and deps <= done)
        if not ready:
            cycle = _find_cycle({n: d for n, d in waiting.items() if n not in done})
            raise ConfigError(f"{source}: dependency cycle: {' -> '.join(cycle)}")
        phases.append(ready)
        done.update(ready)
    return phases


def _find_cycle(waiting: dict[str, set[str]]) -> list[str]:
    for start in sorted(waiting):
        path: list[str] = []
        node = start
        while node not in path:
            path.append(node)
            nexts = sorted(d for d in waiting.get(node, ()) if d in waiting)
            if not nexts:
                break
            node = nexts[0]
        else:
            return [*path[path.index(node):], node]
    return sorted(waiting)
