"""The deploy engine: validate, prepare a release, run the strategy, record the outcome.

Per service: take the deploy lock, apply the environment's overrides, run every
pre-deployment check, create the release, hand a `DeployContext` to the strategy, and
on success activate the release; on failure (or SIGINT) the strategy restores the old
generation, the release is marked failed (or rolled back) and the exit code is 1.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from tts_ops.config.plugin_options import strategy_options
from tts_ops.deploy import history, journal, slots
from tts_ops.deploy.checks import platform_report, predeploy_problems, serving_engine
from tts_ops.deploy.context import DeployContext, DeployFailed
from tts_ops.deploy.lock import DeployLock
from tts_ops.deploy.releases import Release, ReleaseStore
from tts_ops.errors import ConfigError, OperationFailed

ENVIRONMENTS = ("development", "staging", "production")


class Reporter:
    """Phases as they happen: plain lines, or JSON lines with --json.

    Events: start, platform, phase_start, phase, log, plan, weights, samples, result. Plain
    lines show all but phase_start: a canary waiting for traffic says how much it counted
    when the count moves (at least every 10 s), so a pipe sees it is alive; JSON lines
    show every event.
    """

    def __init__(self, as_json: bool, echo: Callable[[str], None]) -> None:
        self.as_json = as_json
        self._echo = echo
        self.closed = False
        self._samples: tuple[Any, float] = (None, 0.0)

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc: object) -> None:
        """A live display (`tts_ops.cli.progress`) ends here; plain lines need nothing."""

    def echo(self, line: str) -> None:
        """Print a line; the first write to a closed output interrupts the deploy (as
        SIGINT would), and later ones, the rollback's, go nowhere."""
        if self.closed:
            return
        try:
            self._echo(line)
        except BrokenPipeError:
            self.closed = True
            import sys

            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # nor may the final flush fail
            os.close(devnull)
            raise

    def event(self, kind: str, **data: Any) -> None:
        if self.as_json:
            self.echo(json.dumps({"event": kind, "ts": round(time.time(), 3), **data}))
        elif kind == "phase":
            mark = "ok  " if data["ok"] else "FAIL"
            self.echo(f"  {mark} {data['service']}: {data['phase']:<12} {data['duration_s']:7.2f}s")
        elif kind == "log":
            self.echo(f"       {data['service']}: {data['message']}")
        elif kind == "start":
            what = data["operation"]
            target = f" to release {data['release']}" if what == "rollback" else ""
            self.echo(f"{what} {data['id']}: {data['service']}{target} with {data['strategy']}"
                      f" ({data['environment']}), {data['old']} -> {data['new']}")
        elif kind == "platform":
            p = data["platform"]
            engine = f"engine {p['engine']}, " if "engine" in p else ""
            self.echo(f"  platform: init {p['init_system']}, process manager"
                      f" {p['process_manager']} ({p['process_manager_reason']}), {engine}"
                      f"espeak-ng {p['espeak_ng']}, Python {p['python']},"
                      f" {p['free_disk_mib']} MiB free")
        elif kind == "result":
            self.echo(f"{data['service']}: {data['result']} in {data['duration_s']:.2f}s"
                      + (f"; downtime {data['downtime_s']:.2f}s" if data.get("downtime_s")
                         is not None else "") + (f" ({data['reason']})" if data.get("reason")
                                                 else ""))
        elif kind == "weights":
            weights = ", ".join(f"{k}={v}" for k, v in sorted(data["weights"].items()))
            self.echo(f"       {data['service']}: weights {weights}")
        elif kind == "samples":
            # a canary waiting for traffic: a line when the count moved, or every 10 s
            key = (data.get("step"), data.get("samples"))
            now = time.monotonic()
            if key != self._samples[0] or now - self._samples[1] >= 10:
                self._samples = (key, now)
                self.echo(f"       {data['service']}: canary at {data['step']}%:"
                          f" {data['samples']} of {data['need']} requests counted,"
                          f" {data['errors']} errors")
        elif kind == "plan":
            self.echo(f"  plan: stop {data['old'] or 'nothing'}; start {data['new']}"
                      f" (ports {data['ports']}); checks: "
                      + ("all passed" if not data["problems"] else "; ".join(data["problems"])))
            self.echo(f"  address: {data['address']}")
            if data.get("records"):
                self.echo(f"  records: {', '.join(data['records'])}")
            if data.get("counts"):
                self.echo(f"  canary steps count requests to {', '.join(data['counts'])}"
                          " (deploy.canary.count_paths); health checks and scrapes do not")


class DeployEngine:
    def __init__(self, app: Any, reporter: Reporter) -> None:
        self.app = app
        self.out = reporter

    def environment(self, explicit: str | None) -> str:
        env = explicit or os.environ.get("TTS_OPS_ENVIRONMENT") or "development"
        if env not in ENVIRONMENTS:
            raise ConfigError(f"--environment must be one of {', '.join(ENVIRONMENTS)}"
                              f" (got {env!r})")
        return env

    def for_environment(self, base: Any, environment: str) -> Any:
        overrides = self.app.config.environments.get(environment, {}).get(base.name)
        if not overrides:
            return base
        from tts_ops.config.models import with_overrides

        return with_overrides(base, overrides)  # validated with the config: cannot fail

    def deploy(self, base: Any, *, strategy: str | None, environment: str, pm: str | None,
               dry_run: bool = False, skip_tests: bool = False,
               release: Release | None = None, kind: str = "deploy") -> dict[str, Any]:
        """Deploy one service; returns the history record (``result`` says how it went).

        ``kind``: ``deploy`` (a new release), ``rollback`` (``release``, an earlier one) or
        ``restart`` (the running release again, as a new generation: no release is made).
        """
        from tts_ops.config.service import ServiceView

        self.app.recover_deploys()  # a deploy that died: finish it before starting another
        # snapshots were validated when their release was made: read them as views
        svc = self.for_environment(base, environment)
        if release is not None:
            svc = ServiceView(release.config)
        if svc.instances == 0:
            raise ConfigError(f"{svc.name}: this host only routes it (instances: 0): there is"
                              " no instance here to deploy; deploy on the hosts that run it"
                              " (this router follows them), or start this one")
        name = strategy or (svc.deploy.strategy if kind == "deploy"
                            else zero_downtime_strategy(svc, kind))
        strat = self.app.host.lookup("strategy", name).factory()
        backend_name = self.app.choose_backend(svc, pm)
        backend = self.app.backend(backend_name)
        state_dir = self.app.state_dir
        store = ReleaseStore(state_dir, svc.name)
        started_at = time.time()
        t0 = time.monotonic()
        deploy_id = f"d-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.urandom(2).hex()}"
        record: dict[str, Any] = {"id": deploy_id, "kind": kind, "service": svc.name,
                                  "strategy": name, "environment": environment,
                                  "backend": backend_name,
                                  "started_at": started_at, "phases": [], "result": None}

        holder = {"pid": os.getpid(), "since": time.time(), "cmd": " ".join(sys.argv[:6])}
        with DeployLock(state_dir, svc.name), \
                self.app.registry().deploy_lock(svc.name, holder) as shared_lock:
            lock_lost = _watch_lock(shared_lock)
            gen_state = slots.active_generation(state_dir, svc.name)
            active = gen_state["generation"]
            if active is None and self._running(backend, svc):
                active = "plain"
            current = store.current()
            old_base = ServiceView(current.config) if current else svc
            old = slots.slot_services(old_base, active, current.id if current else None,
                                      current.source if current else None, 100,
                                      gen_state.get("ports"), gen_state.get("host")) \
                if active else []
            # where the new slots' private ports bind: loopback, or the advertised address
            # when the registry is shared; the same slot keeps where it was
            private_host = (gen_state.get("host") if strat.same_slot and active
                            else self.app.private_host(svc))
            # a routed service always runs as slots behind its router, which owns the
            # address: even a strategy that replaces in place starts on private ports
            first = "blue" if svc.router else "plain"
            new_gen = (active or first) if strat.same_slot else slots.next_generation(active)
            new_preview = slots.slot_services(svc, new_gen, None, None, strat.initial_weight,
                                              host=private_host)
            self.out.event("start", id=deploy_id, operation=kind, service=svc.name, strategy=name,
                           environment=environment, old=active or "nothing", new=new_gen,
                           release=release.id if release is not None else None)
            platform = platform_report(backend_name, self.app.backend_reasons.get(svc.name, ""),
                                       state_dir, svc)
            self.out.event("platform", service=svc.name, platform=platform)
            serving = serving_engine([o for o in old if self._running(backend, o)])
            if serving and serving != platform["engine"]:
                self.out.event("log", service=svc.name, message=(
                    f"engine changes: the serving generation runs {serving}, the new one will"
                    f" run {platform['engine']}"))
            deploy_info = {"id": deploy_id, "services": [svc.name], "strategy": name,
                           "environment": environment}

            def step(phase: str, fn: Callable[..., Any], *args: Any) -> Any:
                if lock_lost():
                    raise Interrupted("SIGUSR2")
                self.out.event("phase_start", service=svc.name, phase=phase)
                began = time.monotonic()
                ok = False
                try:
                    result = fn(*args)
                    ok = True
                    return result
                finally:
                    took = round(time.monotonic() - began, 3)
                    record["phases"].append({"phase": phase, "ok": ok, "duration_s": took})
                    self.out.event("phase", service=svc.name, phase=phase, ok=ok,
                                   duration_s=took)
                    self.app.host.emit("tts_ops_deploy_step", deploy=deploy_info, step=phase,
                                       ok=ok, duration_s=took)

            def validate() -> list[str]:
                # a strategy that stops the old instance first frees its ports itself
                frees_ports = strat.same_slot and bool(old)
                problems = predeploy_problems(svc, [] if frees_ports else new_preview, backend,
                                              state_dir)
                if svc.router and active == "plain":
                    problems.append(f"{svc.name} runs on its own address without its router:"
                                    f" stop it first (tts-ops stop {svc.name}), then deploy"
                                    " or start it behind the router")
                try:
                    self.app.check_node(new_preview)
                except ConfigError as exc:
                    problems.append(str(exc))
                problems += self.app.host.collect("tts_ops_predeploy_checks",
                                                  config=self.app.config, services=[svc],
                                                  environment=environment)
                return problems

            problems = step("validate", validate)
            if not dry_run:  # what a client pinned to the address will see (dry run: the plan)
                self.out.event("log", service=svc.name,
                               message="address: " + address_guarantee(svc, name))
            if dry_run:
                from tts_ops.discovery.advertise import reachable_host

                advertise = self.app.advertised
                self.out.event("plan", service=svc.name, old=[s.name for s in old],
                               new=[s.name for s in new_preview],
                               ports=[s.port for s in new_preview], problems=problems,
                               address=address_guarantee(svc, name),
                               records=[f"{s.instance_id} at {reachable_host(s.host, advertise)}"
                                        f":{s.port}" for s in new_preview],
                               counts=getattr(strategy_options(svc, name, self.app.host),
                                              "count_paths", None))
                record["result"] = "dry_run" if not problems else "checks_failed"
                return record
            if problems:
                raise OperationFailed(f"{svc.name}: pre-deployment validation failed;"
                                      " nothing was changed", details=problems)
            # later commands without --process-manager must find the service where it runs
            self.app.record_backend(svc.name, backend_name)
            self.app.host.emit("tts_ops_deploy_started", deploy=deploy_info)
            if release is None and kind != "restart":
                snapshot = _jsonable(svc.model_dump(mode="json"))
                release = step("prepare", store.create, snapshot, name, environment,
                               svc.source, svc.install)
            release_id = release.id if release is not None else None
            record["release"] = release_id
            new = slots.slot_services(svc, new_gen, release_id,
                                      release.source if release is not None else None,
                                      strat.initial_weight, slots.slot_ports(new_preview),
                                      private_host)
            settings = svc.deploy
            if skip_tests:
                settings = settings.model_copy(update={"verify_text": ""})
            ctx = DeployContext(
                service=svc, old=old, new=new, backend=backend, registry=self.app.registry(),
                settings=settings, release_id=release_id or "", step=step,
                log=lambda m: self.out.event("log", service=svc.name, message=m),
                progress=lambda kind, **data: self.out.event(kind, service=svc.name, **data),
                emit=self.app.host.emit, verify_hooks=self._verify_hooks(skip_tests),
                deadline=time.monotonic() + settings.progress_deadline_seconds,
                options=strategy_options(svc, name, self.app.host))
            if svc.router:
                from tts_ops.routing import ensure, remote_servers, server_of

                ctx.router = self.app.router(svc)
                serving = [o for o in old if self._running(backend, o)]
                ctx.servers = {s.name: s for s in [*(server_of(o, 100) for o in serving),
                                                   *remote_servers(self.app, svc)]}
                step("router", ensure, ctx.router, svc, backend, list(ctx.servers.values()))
            previous = store.current()
            journal.write(state_dir, svc.name, {
                "deploy_id": deploy_id, "service": svc.name, "strategy": name,
                "environment": environment, "backend": backend_name, "started_at": started_at,
                "old_generation": active, "old_release": current.id if current else None,
                "old_ports": gen_state.get("ports"), "old_host": gen_state.get("host"),
                "new_generation": new_gen, "release": release_id,
                "new_ports": slots.slot_ports(new), "new_host": private_host})
            try:
                with interruptible():
                    strat.run(ctx)
                    if lock_lost():  # lost after the last step: not finished beside another
                        raise Interrupted("SIGUSR2")
            except BaseException as exc:
                with shielded():  # the rollback itself is not interrupted
                    if not isinstance(exc, DeployFailed):
                        strat.rollback(ctx)  # the strategy's own handler did not run
                    reason = _why(exc)
                    if lock_lost():
                        reason = f"its deploy lock was lost ({lock_lost()})"
                    if release is not None and kind != "restart":
                        store.save(release, state="failed" if isinstance(exc, DeployFailed)
                                   else "rolled_back", reason=reason)
                    record.update(result="rolled_back", reason=reason,
                                  duration_s=round(time.monotonic() - t0, 3))
                    self._finish(record, deploy_info)
                    journal.clear(state_dir, svc.name)
                if not isinstance(exc, DeployFailed | KeyboardInterrupt | BrokenPipeError):
                    raise  # a bug: rolled back and recorded, and it keeps its traceback
                tail = exc.log_tail if isinstance(exc, DeployFailed) else []
                after = ("the old release is still serving" if old else
                         "nothing served it before, and no instance of it was left running")
                raise DeployFailed(f"{svc.name}: {reason}; {after}", tail) from None
            if release is not None:
                store.activate(release)
            if release is not None and previous is not None and previous.id != release.id \
                    and release.created_at < previous.created_at:
                store.save(previous, state="rolled_back", reason=f"rolled back to {release.id}")
            slots.save_generation(state_dir, svc.name, new_gen, release_id,
                                  slots.slot_ports(new), private_host)
            store.prune(svc.deploy.keep_releases)
            record.update(result="deployed", duration_s=round(time.monotonic() - t0, 3),
                          downtime_s=ctx.downtime_s)
            with shielded():
                self._finish(record, deploy_info)
                journal.clear(state_dir, svc.name)
            return record

    def _finish(self, record: dict[str, Any], deploy_info: dict[str, Any]) -> None:
        history.append(self.app.state_dir, record)
        self.app.host.emit("tts_ops_deploy_finished", deploy=deploy_info,
                           result=record["result"], duration_s=record.get("duration_s", 0.0))
        self.out.event("result", service=record["service"], result=record["result"],
                       duration_s=record.get("duration_s", 0.0),
                       downtime_s=record.get("downtime_s"), reason=record.get("reason"),
                       release=record.get("release"))

    def _running(self, backend: Any, svc: Any) -> bool:
        try:
            return str(backend.status([svc])[0].state) in ("running", "unhealthy")
        except Exception:
            return False

    def _verify_hooks(self, skip: bool) -> Callable[[Any, str], list[str]]:
        def run(svc: Any, url: str) -> list[str]:
            if skip:
                return []
            return self.app.host.collect("tts_ops_verify_deploy", service=svc, url=url)

        return run


def zero_downtime_strategy(svc: Any, kind: str) -> str:
    """The strategy of a rollback or a restart: the service's own unless it stops before it
    starts (``direct``), then ``blue_green`` (a restart is always ``blue_green``)."""
    configured = svc.deploy.strategy
    if kind == "restart" or configured == "direct":
        return "blue_green"
    return configured


def address_guarantee(svc: Any, strategy: str) -> str:
    """What a client pinned to the service's configured address sees during the deploy."""
    where = f"{svc.host}:{svc.port}"
    if svc.router:
        return (f"{where} is {svc.router}'s (router): instances change behind it, weights move"
                " exactly and at once, and a stopped instance is drained first: no request"
                " fails")
    if svc.socket_mode != "inherit":
        return (f"{where} is bound by the command itself (socket: none): it closes while the"
                " generations change; only discovery clients follow the switch")
    line = f"{where} stays open: every generation inherits its socket"
    if strategy == "direct":
        return line + "; connections wait while the new release starts"
    if strategy == "canary":
        return (line + "; without a router the canary's share is its share of the accepting"
                " processes (new connections), not the step weight, which discovery clients"
                " follow")
    return line + ": no connection is refused"


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP during a deploy: handled exactly like SIGINT (Ctrl-C)."""


_SIGNALS = ("SIGTERM", "SIGHUP", "SIGUSR2")


def _watch_lock(lock: Any) -> Callable[[], str | None]:
    """A shared registry's deploy lock can be lost while held (the deploy was paused past
    its ttl): it interrupts the deploy (SIGUSR2 to the main thread, as `interruptible`
    handles it) and the returned function says why. Locks without the notion: never."""
    if lock is None or not hasattr(lock, "lost"):
        return lambda: None
    if threading.current_thread() is threading.main_thread():
        import _thread

        lock.on_lost = lambda: _thread.interrupt_main(signal.SIGUSR2)
    return lambda: lock.lost


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM and SIGHUP raise `Interrupted` in the deploy, as SIGINT raises KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        raise Interrupted(signal.Signals(signum).name)

    old = {name: signal.signal(getattr(signal, name), handler) for name in _SIGNALS}
    try:
        yield
    finally:
        for name, previous in old.items():
            signal.signal(getattr(signal, name), previous)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP off while a rollback or a record is written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = ("SIGINT", *_SIGNALS)
    old = {name: signal.signal(getattr(signal, name), signal.SIG_IGN) for name in names}
    try:
        yield
    finally:
        for name, previous in old.items():
            signal.signal(getattr(signal, name), previous)


def _why(exc: BaseException) -> str:
    if isinstance(exc, DeployFailed):
        return exc.reason
    if isinstance(exc, Interrupted):
        return f"interrupted ({exc.args[0]})"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (SIGINT)"
    if isinstance(exc, BrokenPipeError):
        return "interrupted (its output was closed)"
    return f"failed: {type(exc).__name__}: {exc}"


def _jsonable(value: Any) -> Any:
    """A config dump as plain JSON (views may hold Paths)."""
    from pathlib import Path

    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return str(value) if isinstance(value, Path) else value
