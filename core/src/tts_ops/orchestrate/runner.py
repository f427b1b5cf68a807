"""Phased start and stop, status, and the monitoring loop over a dependency `Graph`."""

from __future__ import annotations

import shutil
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tts_ops.backend import StartFailed
from tts_ops.errors import TtsOpsError
from tts_ops.health import check_http, check_service
from tts_ops.orchestrate.graph import Edge, Graph

if TYPE_CHECKING:
    from tts_ops.runtime.core import Runtime

POLL = 0.1


@dataclass
class Wait:
    dependency: str
    condition: str
    required: bool
    seconds: float
    outcome: str  # ok | failed | timeout | skipped
    detail: str = ""

    def describe(self) -> str:
        kind = "required" if self.required else "optional"
        return (f"waited {self.seconds:.1f}s for {kind} {self.dependency} ({self.condition}):"
                f" {self.outcome}{' - ' + self.detail if self.detail else ''}")


@dataclass
class Outcome:
    service: str
    phase: int
    result: str = "pending"  # started | already_running | completed | failed | blocked
    detail: str = ""
    waits: list[Wait] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"service": self.service, "phase": self.phase + 1, "result": self.result,
                "detail": self.detail, "waits": [w.__dict__ for w in self.waits],
                "warnings": self.warnings}


class Orchestrator:
    def __init__(self, app: Runtime, graph: Graph, pm: str | None = None,
                 log: Callable[[str], None] = lambda m: None) -> None:
        self.app = app
        self.graph = graph
        self.pm = pm
        self.log = log
        self.operator_stopped: set[str] = set()  # left stopped, said once

    # --- state of a node ---

    def _rows(self, name: str) -> list[Any]:
        svc = self.graph.services[name]
        running = self.app.runtime([svc])
        backend = self.app.backend(self.app.choose_backend(svc, self.pm))
        return backend.status(running)

    def node_state(self, name: str) -> tuple[str, bool, Any]:
        """(state, ready, first status row) of a configured service."""
        rows = self._rows(name)
        states = {str(r.state) for r in rows}
        for worst in ("failed", "backoff", "starting", "stopping", "unhealthy", "stopped"):
            if worst in states:
                return worst, all(r.ready for r in rows), rows[0]
        return "running", all(r.ready for r in rows), rows[0]

    def check(self, edge: Edge) -> tuple[str, str]:
        """("ok" | "waiting" | "failed", detail) for one dependency, without waiting."""
        if edge.external:
            result = check_http(edge.url, 2.0)
            return ("ok" if result.ok else "waiting"), result.detail
        state, ready, row = self.node_state(edge.dependency)
        svc = self.graph.services[edge.dependency]
        if edge.condition == "completed":
            if state == "stopped" and row.exit_code == 0:
                return "ok", "exited 0"
            if state == "failed" or (state == "stopped" and row.exit_code not in (None, 0)):
                return "failed", f"exited {row.exit_code}" if row.exit_code else (
                    row.reason or state)
            return "waiting", state
        if state == "failed":
            return "failed", row.reason or "failed"
        if state == "stopped":
            return "failed", "not running (it exited or was never started)"
        if edge.condition == "started":
            return "ok", state
        if not (state == "running" and ready):
            return "waiting", state
        if edge.condition == "ready":
            return "ok", "ready"
        if svc.health_check.type == "none":
            return "ok", "ready (no health check)"
        result = check_service(svc)
        return ("ok" if result.ok else "waiting"), result.detail

    # --- start ---

    def start(self) -> list[Outcome]:
        self.app.recover_deploys(list(self.graph.services))
        outcomes = {name: Outcome(name, i) for i, phase in enumerate(self.graph.phases)
                    for name in phase}
        for i, phase in enumerate(self.graph.phases):
            self.log(f"phase {i + 1}: {', '.join(phase)}")
            with ThreadPoolExecutor(max_workers=max(1, len(phase))) as pool:
                list(pool.map(lambda n: self._start_one(n, outcomes), phase))
        return [outcomes[n] for phase in self.graph.phases for n in phase]

    def _start_one(self, name: str, outcomes: dict[str, Outcome]) -> None:
        out = outcomes[name]
        for edge in self.graph.deps_of(name):
            wait = self._wait(edge, outcomes)
            out.waits.append(wait)
            self.log(f"{name}: {wait.describe()}")
            if wait.outcome != "ok":
                if edge.required:
                    out.result, out.detail = "blocked", wait.describe()
                    return
                out.warnings.append(f"optional dependency {edge.dependency} is down:"
                                    f" {wait.detail or wait.outcome}; starting anyway")
        problem = self._resources(self.graph.services[name])
        if problem:
            out.result, out.detail = "failed", problem
            return
        self._launch(name, out)

    def _wait(self, edge: Edge, outcomes: dict[str, Outcome]) -> Wait:
        began = time.monotonic()
        if not edge.external:
            dep = outcomes.get(edge.dependency)
            if dep is not None and dep.result in ("failed", "blocked"):
                return Wait(edge.dependency, edge.condition, edge.required, 0.0, "failed",
                            f"it {dep.result}: {dep.detail}")
        detail = ""
        while True:
            status, detail = self.check(edge)
            took = time.monotonic() - began
            if status == "ok":
                return Wait(edge.dependency, edge.condition, edge.required, took, "ok", detail)
            if not edge.required:  # optional: looked at once, never waited for
                return Wait(edge.dependency, edge.condition, edge.required, took, "down",
                            detail)
            if status == "failed":  # it exited while we waited: no point waiting on
                return Wait(edge.dependency, edge.condition, edge.required, took, "failed",
                            detail)
            if took >= edge.timeout:
                return Wait(edge.dependency, edge.condition, edge.required, took, "timeout",
                            detail)
            time.sleep(POLL)

    def _resources(self, svc: Any) -> str | None:
        if svc.min_free_memory_mb is not None:
            free = _available_memory_mb()
            if free is not None and free < svc.min_free_memory_mb:
                return (f"needs {svc.min_free_memory_mb} MB of free memory; {free} MB"
                        " available")
        if svc.min_free_disk_mb is not None:
            where = svc.working_dir or self.app.state_dir
            while not where.exists() and where != where.parent:
                where = where.parent
            free = shutil.disk_usage(where).free // 2**20
            if free < svc.min_free_disk_mb:
                return f"needs {svc.min_free_disk_mb} MB of free disk under {where}; {free} MB free"
        return None

    def _launch(self, name: str, out: Outcome) -> None:
        svc = self.graph.services[name]
        state, ready, _row = self.node_state(name)
        if state == "running" and ready and not svc.oneshot:
            out.result = "already_running"
            return
        backend = self.app.backend(self.app.choose_backend(svc, self.pm))
        try:
            if svc.router:
                from tts_ops.routing import prepare_start

                prepare_start(self.app, svc, self.pm)
            for running in self.app.runtime([svc]):
                self.app.record_backend(running.name, backend.name)
                backend.start(running)
            if svc.router:
                from tts_ops.routing import finish_start

                finish_start(self.app, svc)
            out.result = "started"
        except StartFailed as exc:
            state, _ready, row = self.node_state(name)
            if svc.oneshot and state == "stopped" and row.exit_code == 0:
                out.result = "completed"  # a job that finished before it could look ready
                return
            out.result, out.detail = "failed", exc.reason
        except TtsOpsError as exc:  # its router: a config haproxy refused, servers not up
            out.result, out.detail = "failed", exc.message

    # --- stop ---

    def stop(self) -> list[tuple[str, str]]:
        self.app.recover_deploys(list(self.graph.services))
        done: list[tuple[str, str]] = []
        for phase in reversed(self.graph.phases):
            def one(name: str) -> tuple[str, str]:
                svc = self.graph.services[name]
                backend = self.app.backend(self.app.choose_backend(svc, self.pm))
                for running in self.app.runtime([svc]):
                    backend.stop(running)
                self.app.release_addresses([svc], self.pm)
                return name, "stopped"

            with ThreadPoolExecutor(max_workers=max(1, len(phase))) as pool:
                done.extend(pool.map(one, phase))
        return done

    # --- status ---

    def status(self) -> dict[str, Any]:
        nodes = []
        for i, phase in enumerate(self.graph.phases):
            for name in phase:
                state, ready, row = self.node_state(name)
                health = "-"
                svc = self.graph.services[name]
                if state == "running" and ready:
                    health = "passing" if svc.health_check.type == "none" or \
                        check_service(svc).ok else "failing"
                blocked = []
                if state != "running":
                    for edge in self.graph.deps_of(name):
                        if edge.required:
                            ok, detail = self.check(edge)
                            if ok != "ok":
                                blocked.append(f"{edge.dependency} ({edge.condition}): {detail}")
                nodes.append({"service": name, "phase": i + 1, "state": state, "ready": ready,
                              "health": health, "pid": row.pid, "blocked_on": blocked,
                              "depends_on": [f"{e.dependency}:{e.condition}"
                                             f"{'' if e.required else '?'}"
                                             for e in self.graph.deps_of(name)]})
        externals = []
        for dep, url in self.graph.externals().items():
            result = check_http(url, 2.0)
            externals.append({"dependency": dep, "url": url,
                              "health": "passing" if result.ok else "failing",
                              "detail": result.detail})
        return {"phases": self.graph.phases, "nodes": nodes, "external": externals}

    # --- the monitoring loop ---

    def monitor(self, interval: float = 5.0, once: bool = False,
                stop: threading.Event | None = None) -> None:
        from tts_ops.notify import notify, watchdog_interval

        stop = stop or threading.Event()
        previous = signal.getsignal(signal.SIGTERM)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_a: stop.set())
        restarts: dict[str, list[float]] = {}
        gave_up: set[str] = set()
        held: set[str] = set()
        watchdog = watchdog_interval()
        first = True
        try:
            while not stop.is_set():
                seen = self._monitor_round(restarts, gave_up, held)
                if first:
                    notify("READY=1\nSTATUS=watching " + ", ".join(self.graph.services))
                    first = False
                if once:  # one round asked for: one line says what it found
                    self.log(f"checked {len(self.graph.services)} services: "
                             + ", ".join(f"{n} {what}" for what, n in seen.items() if n))
                    return
                end = time.monotonic() + interval
                while not stop.is_set() and time.monotonic() < end:
                    if watchdog:
                        notify("WATCHDOG=1")
                    stop.wait(min(watchdog or interval, max(0.0, end - time.monotonic()),
                                  0.5))
        finally:
            notify("STOPPING=1")
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, previous)

    def _monitor_round(self, restarts: dict[str, list[float]], gave_up: set[str],
                       held: set[str]) -> dict[str, int]:
        """One look at every service; how many it found in each state or acted on."""
        from tts_ops import intent

        seen = dict.fromkeys(("running", "left stopped", "done", "held", "given up",
                              "restarted", "failed to restart"), 0)
        # the daemon changes state: it finishes a deploy that died (a read-only view only
        # reports one)
        self.app.recover_deploys(list(self.graph.services))
        left_stopped = intent.stopped(self.app.state_dir)
        for phase in self.graph.phases:
            for name in phase:
                svc = self.graph.services[name]
                state, _ready, row = self.node_state(name)
                if state in ("running", "starting", "backoff", "stopping", "unhealthy"):
                    gave_up.discard(name)
                    self.operator_stopped.discard(name)
                    seen["running"] += 1
                    continue
                if name in left_stopped:  # an operator stopped it: not a failure
                    if name not in self.operator_stopped:
                        self.log(f"leaving {name} stopped: an operator stopped it")
                        self.operator_stopped.add(name)
                    seen["left stopped"] += 1
                    continue
                if svc.oneshot and state == "stopped" and row.exit_code == 0:
                    seen["done"] += 1
                    continue
                down = [e for e in self.graph.deps_of(name)
                        if e.required and self.check(e)[0] != "ok"]
                if down:
                    if name not in held:
                        self.log(f"holding {name}: waiting for "
                                 + ", ".join(f"{e.dependency} ({e.condition})" for e in down))
                        held.add(name)
                    seen["held"] += 1
                    continue
                if name in gave_up:
                    seen["given up"] += 1
                    continue
                now = time.monotonic()
                recent = [t for t in restarts.get(name, []) if now - t <= svc.restart_window]
                if len(recent) >= max(1, svc.max_restarts):
                    self.log(f"{name}: {len(recent)} restarts within {svc.restart_window:g}s;"
                             " giving up until it runs again")
                    gave_up.add(name)
                    seen["given up"] += 1
                    continue
                restarts[name] = [*recent, now]
                resumed = name in held
                held.discard(name)
                backend = self.app.backend(self.app.choose_backend(svc, self.pm))
                try:
                    for running in self.app.runtime([svc]):
                        status = backend.start(running)
                        self.app.host.emit("tts_ops_service_restarted", service=running,
                                           backend=backend.name, status=status)
                    self.log(f"{'resumed' if resumed else 'restarted'} {name}")
                    seen["restarted"] += 1
                except StartFailed as exc:
                    self.log(f"{name}: restart failed: {exc.reason}")
                    seen["failed to restart"] += 1
        return seen


def _available_memory_mb() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        return None
    return None
