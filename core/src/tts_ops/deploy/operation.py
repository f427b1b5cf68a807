"""One deploy of one service, from its locks to its history record: `Operation`.

`tts_ops.deploy.engine.DeployEngine` resolves what to deploy (`Target`); an operation then
plans under the service's deploy locks (which generation serves, which comes next, on
which ports), validates, hands a `DeployContext` to the strategy, and records how it went:
activated on success, rolled back on a failure or an interrupt, journaled in between so a
deploy that dies is finished by the next command.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tts_ops.config.plugin_options import strategy_options
from tts_ops.deploy import history, journal, slots
from tts_ops.deploy.checks import platform_report, predeploy_problems, serving_engine
from tts_ops.deploy.context import DeployContext, DeployFailed
from tts_ops.deploy.lock import DeployLock
from tts_ops.deploy.releases import Release, ReleaseStore
from tts_ops.deploy.reporter import Reporter
from tts_ops.deploy.signals import Interrupted, interruptible, shielded, watch_lock, why
from tts_ops.errors import ConfigError, OperationFailed

if TYPE_CHECKING:
    from tts_ops.runtime.core import Runtime


@dataclass
class Target:
    """What the engine resolved: the service (under its environment's overrides, or a
    release's snapshot), the strategy and the backend."""

    svc: Any
    kind: str                 # deploy, rollback or restart
    strategy: str
    strat: Any                # the strategy object (`tts_ops.contracts.Strategy`)
    backend_name: str
    backend: Any
    environment: str
    release: Release | None   # a rollback's release; a deploy's is made in "prepare"
    dry_run: bool = False
    skip_tests: bool = False


class Operation:
    def __init__(self, runtime: Runtime, out: Reporter, target: Target) -> None:
        self.rt, self.out, self.t = runtime, out, target
        svc = target.svc
        self.store = ReleaseStore(runtime.state_dir, svc.name)
        self.release = target.release
        self.t0 = time.monotonic()
        self.started_at = time.time()
        self.deploy_id = (f"d-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
                          f"-{os.urandom(2).hex()}")
        self.record: dict[str, Any] = {
            "id": self.deploy_id, "kind": target.kind, "service": svc.name,
            "strategy": target.strategy, "environment": target.environment,
            "backend": target.backend_name, "started_at": self.started_at, "phases": [],
            "result": None}
        self.info = {"id": self.deploy_id, "services": [svc.name],
                     "strategy": target.strategy, "environment": target.environment}
        self.lock_lost: Callable[[], str | None] = lambda: None

    def run(self) -> dict[str, Any]:
        svc = self.t.svc
        holder = {"pid": os.getpid(), "since": time.time(), "cmd": " ".join(sys.argv[:6])}
        with DeployLock(self.rt.state_dir, svc.name), \
                self.rt.registry().deploy_lock(svc.name, holder) as shared_lock:
            self.lock_lost = watch_lock(shared_lock)
            self._plan()
            self._announce()
            problems = self.step("validate", self._validate)
            if self.t.dry_run:
                return self._dry_run(problems)
            # what a client pinned to the address will see
            self.out.event("log", service=svc.name,
                           message="address: " + address_guarantee(svc, self.t.strat))
            if problems:
                raise OperationFailed(f"{svc.name}: pre-deployment validation failed;"
                                      " nothing was changed", details=problems)
            # later commands without --process-manager must find the service where it runs
            self.rt.record_backend(svc.name, self.t.backend_name)
            self.rt.host.emit("tts_ops_deploy_started", deploy=self.info)
            ctx = self._context()
            self._journal(ctx)
            try:
                with interruptible():
                    self.t.strat.run(ctx)
                    if self.lock_lost():  # lost after the last step: not finished beside another
                        raise Interrupted("SIGUSR2")
            except BaseException as exc:
                self._roll_back(ctx, exc)
                raise
            return self._succeed(ctx)

    # --- the steps, in order ---

    def _plan(self) -> None:
        """Under the locks: which generation serves, and which comes next where."""
        from tts_ops.config.service import ServiceView

        svc, strat, state_dir = self.t.svc, self.t.strat, self.rt.state_dir
        self.gen_state = slots.active_generation(state_dir, svc.name)
        active = self.gen_state["generation"]
        if active is None and running(self.t.backend, svc):
            active = "plain"
        self.active = active
        self.current = current = self.store.current()
        old_base = ServiceView(current.config) if current else svc
        self.old = slots.slot_services(
            old_base, active, current.id if current else None,
            current.source if current else None, 100, self.gen_state.get("ports"),
            self.gen_state.get("host")) if active else []
        # where the new slots' private ports bind: loopback, or the advertised address
        # when the registry is shared; the same slot keeps where it was
        self.private_host = (self.gen_state.get("host") if strat.same_slot and active
                             else self.rt.private_host(svc))
        # a routed service always runs as slots behind its router, which owns the
        # address: even a strategy that replaces in place starts on private ports
        first = "blue" if svc.router else "plain"
        self.new_gen = (active or first) if strat.same_slot else slots.next_generation(active)
        self.new_preview = slots.slot_services(svc, self.new_gen, None, None,
                                               strat.initial_weight, host=self.private_host)

    def _announce(self) -> None:
        svc, t = self.t.svc, self.t
        self.out.event("start", id=self.deploy_id, operation=t.kind, service=svc.name,
                       strategy=t.strategy, environment=t.environment,
                       old=self.active or "nothing", new=self.new_gen,
                       release=self.release.id if self.release is not None else None)
        self.platform = platform_report(t.backend_name,
                                        self.rt.backend_reasons.get(svc.name, ""),
                                        self.rt.state_dir, svc)
        self.out.event("platform", service=svc.name, platform=self.platform)
        engine = serving_engine([o for o in self.old if running(t.backend, o)])
        if engine and engine != self.platform["engine"]:
            self.out.event("log", service=svc.name, message=(
                f"engine changes: the serving generation runs {engine}, the new one will"
                f" run {self.platform['engine']}"))

    def step(self, phase: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run one phase, timed, recorded and announced (the strategy's steps too)."""
        if self.lock_lost():
            raise Interrupted("SIGUSR2")
        svc = self.t.svc
        self.out.event("phase_start", service=svc.name, phase=phase)
        began = time.monotonic()
        ok = False
        try:
            result = fn(*args)
            ok = True
            return result
        finally:
            took = round(time.monotonic() - began, 3)
            self.record["phases"].append({"phase": phase, "ok": ok, "duration_s": took})
            self.out.event("phase", service=svc.name, phase=phase, ok=ok, duration_s=took)
            self.rt.host.emit("tts_ops_deploy_step", deploy=self.info, step=phase, ok=ok,
                              duration_s=took)

    def _validate(self) -> list[str]:
        svc = self.t.svc
        # a strategy that stops the old instance first frees its ports itself
        frees_ports = self.t.strat.same_slot and bool(self.old)
        problems = predeploy_problems(svc, [] if frees_ports else self.new_preview,
                                      self.t.backend, self.rt.state_dir)
        if svc.router and self.active == "plain":
            problems.append(f"{svc.name} runs on its own address without its router:"
                            f" stop it first (tts-ops stop {svc.name}), then deploy"
                            " or start it behind the router")
        try:
            self.rt.check_node(self.new_preview)
        except ConfigError as exc:
            problems.append(str(exc))
        problems += self.rt.host.collect("tts_ops_predeploy_checks", config=self.rt.config,
                                         services=[svc], environment=self.t.environment)
        return problems

    def _dry_run(self, problems: list[str]) -> dict[str, Any]:
        from tts_ops.discovery.advertise import reachable_host

        svc, advertise = self.t.svc, self.rt.advertised
        self.out.event("plan", service=svc.name, old=[s.name for s in self.old],
                       new=[s.name for s in self.new_preview],
                       ports=[s.port for s in self.new_preview], problems=problems,
                       address=address_guarantee(svc, self.t.strat),
                       records=[f"{s.instance_id} at {reachable_host(s.host, advertise)}"
                                f":{s.port}" for s in self.new_preview],
                       counts=getattr(strategy_options(svc, self.t.strategy, self.rt.host),
                                      "count_paths", None))
        self.record["result"] = "dry_run" if not problems else "checks_failed"
        return self.record

    def _context(self) -> DeployContext:
        """Make the release (a deploy's), its slots, and the strategy's context."""
        svc, t = self.t.svc, self.t
        if self.release is None and t.kind != "restart":
            snapshot = _jsonable(svc.model_dump(mode="json"))
            self.release = self.step("prepare", self.store.create, snapshot, t.strategy,
                                     t.environment, svc.source, svc.install)
        release = self.release
        self.release_id = release.id if release is not None else None
        self.record["release"] = self.release_id
        self.new = slots.slot_services(svc, self.new_gen, self.release_id,
                                       release.source if release is not None else None,
                                       t.strat.initial_weight, slots.slot_ports(self.new_preview),
                                       self.private_host)
        settings = svc.deploy
        if t.skip_tests:
            settings = settings.model_copy(update={"verify_text": ""})
        ctx = DeployContext(
            service=svc, old=self.old, new=self.new, backend=t.backend,
            registry=self.rt.registry(), settings=settings, release_id=self.release_id or "",
            step=self.step, log=lambda m: self.out.event("log", service=svc.name, message=m),
            progress=lambda kind, **data: self.out.event(kind, service=svc.name, **data),
            watch=self.out.watch, emit=self.rt.host.emit, verify_hooks=self._verify_hooks(),
            deadline=time.monotonic() + settings.progress_deadline_seconds,
            options=strategy_options(svc, t.strategy, self.rt.host))
        if svc.router:
            from tts_ops.routing import ensure, remote_servers, server_of

            ctx.router = self.rt.router(svc)
            live = [o for o in self.old if running(t.backend, o)]
            ctx.servers = {s.name: s for s in [*(server_of(o, 100) for o in live),
                                               *remote_servers(self.rt, svc)]}
            self.step("router", ensure, ctx.router, svc, t.backend, list(ctx.servers.values()))
        return ctx

    def _journal(self, ctx: DeployContext) -> None:
        """What a later command needs to finish this deploy if this process dies."""
        svc, current = self.t.svc, self.current
        self.previous = self.store.current()
        journal.write(self.rt.state_dir, svc.name, {
            "deploy_id": self.deploy_id, "service": svc.name, "strategy": self.t.strategy,
            "environment": self.t.environment, "backend": self.t.backend_name,
            "started_at": self.started_at, "old_generation": self.active,
            "old_release": current.id if current else None,
            "old_ports": self.gen_state.get("ports"), "old_host": self.gen_state.get("host"),
            "new_generation": self.new_gen, "release": self.release_id,
            "new_ports": slots.slot_ports(self.new), "new_host": self.private_host})

    def _roll_back(self, ctx: DeployContext, exc: BaseException) -> None:
        """After ``exc``: the old generation restored, the release and the history marked;
        raises `DeployFailed` in one line, or returns for a bug (its traceback is kept)."""
        svc, release, kind = self.t.svc, self.release, self.t.kind
        with shielded():  # the rollback itself is not interrupted
            if not isinstance(exc, DeployFailed):
                self.t.strat.rollback(ctx)  # the strategy's own handler did not run
            reason = why(exc)
            if self.lock_lost():
                reason = f"its deploy lock was lost ({self.lock_lost()})"
            if release is not None and kind != "restart":
                self.store.save(release, state="failed" if isinstance(exc, DeployFailed)
                                else "rolled_back", reason=reason)
            self.record.update(result="rolled_back", reason=reason,
                               duration_s=round(time.monotonic() - self.t0, 3))
            self._finish()
            journal.clear(self.rt.state_dir, svc.name)
        if not isinstance(exc, DeployFailed | KeyboardInterrupt | BrokenPipeError):
            return  # a bug: rolled back and recorded; the caller re-raises it
        tail = exc.log_tail if isinstance(exc, DeployFailed) else []
        after = ("the old release is still serving" if self.old else
                 "nothing served it before, and no instance of it was left running")
        raise DeployFailed(f"{svc.name}: {reason}; {after}", tail) from None

    def _succeed(self, ctx: DeployContext) -> dict[str, Any]:
        svc, release, previous = self.t.svc, self.release, self.previous
        state_dir = self.rt.state_dir
        if release is not None:
            self.store.activate(release)
        if release is not None and previous is not None and previous.id != release.id \
                and release.created_at < previous.created_at:
            self.store.save(previous, state="rolled_back", reason=f"rolled back to {release.id}")
        slots.save_generation(state_dir, svc.name, self.new_gen, self.release_id,
                              slots.slot_ports(self.new), self.private_host)
        self.store.prune(svc.deploy.keep_releases)
        self.record.update(result="deployed", duration_s=round(time.monotonic() - self.t0, 3),
                           downtime_s=ctx.downtime_s)
        with shielded():
            self._finish()
            journal.clear(state_dir, svc.name)
        return self.record

    def _finish(self) -> None:
        record = self.record
        history.append(self.rt.state_dir, record)
        self.rt.host.emit("tts_ops_deploy_finished", deploy=self.info, result=record["result"],
                          duration_s=record.get("duration_s", 0.0))
        self.out.event("result", service=record["service"], result=record["result"],
                       duration_s=record.get("duration_s", 0.0),
                       downtime_s=record.get("downtime_s"), reason=record.get("reason"),
                       release=record.get("release"))

    def _verify_hooks(self) -> Callable[[Any, str], list[str]]:
        def run(svc: Any, url: str) -> list[str]:
            if self.t.skip_tests:
                return []
            return self.rt.host.collect("tts_ops_verify_deploy", service=svc, url=url)

        return run


def running(backend: Any, svc: Any) -> bool:
    try:
        return str(backend.status([svc])[0].state) in ("running", "unhealthy")
    except Exception:
        return False


def address_guarantee(svc: Any, strategy: Any) -> str:
    """What a client pinned to the service's configured address sees during the deploy,
    from what the strategy says of itself: ``same_slot`` (it stops before it starts) and
    the optional ``splits_traffic`` (some requests go to each release for a while)."""
    where = f"{svc.host}:{svc.port}"
    if svc.router:
        return (f"{where} is {svc.router}'s (router): instances change behind it, weights move"
                " exactly and at once, and a stopped instance is drained first: no request"
                " fails")
    if svc.socket_mode != "inherit":
        return (f"{where} is bound by the command itself (socket: none): it closes while the"
                " generations change; only discovery clients follow the switch")
    line = f"{where} stays open: every generation inherits its socket"
    if strategy.same_slot:
        return line + "; connections wait while the new release starts"
    if getattr(strategy, "splits_traffic", False):
        return (line + "; without a router the new release's share is its share of the"
                " accepting processes (new connections), not the step weight, which discovery"
                " clients follow")
    return line + ": no connection is refused"


def _jsonable(value: Any) -> Any:
    """A config dump as plain JSON (views may hold Paths)."""
    from pathlib import Path

    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return str(value) if isinstance(value, Path) else value
