"""The ``supervisor`` process backend: programs in supervisord's include dir, driven over RPC.

supervisor has no readiness protocol: after RUNNING, ``start`` waits for the health check
(``/ready`` for the reference server) before it returns. supervisor keeps no restart
counter, so restarts are counted from the ``spawned:`` lines of its own log since tts-ops
started the program. ``stop`` also kills what is left of the program's process group:
supervisord considers a program stopped once its main process exits.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tts_ops.logwriter import claim_log_file
from tts_ops.plugin import (
    BackendContext,
    BackendUnavailable,
    ConfigError,
    OperationFailed,
    ServiceStatus,
    StartFailed,
    State,
    Support,
    command_problem,
)
from tts_ops.procinfo import descendants, group_exists, kill_group, usage
from tts_ops.statefile import PRIVATE, atomic_write_bytes, atomic_write_json, private_dir, read_json
from tts_ops_supervisor.conf import SupervisorConf, find_conf, read_conf
from tts_ops_supervisor.program import (
    keeper_name,
    program_name,
    render,
    render_keeper,
    startsecs,
)
from tts_ops_supervisor.rpc import Client, RpcFault, Unreachable

STATES = {"STOPPED": State.STOPPED, "STARTING": State.STARTING, "RUNNING": State.RUNNING,
          "BACKOFF": State.BACKOFF, "STOPPING": State.STOPPING, "EXITED": State.STOPPED,
          "FATAL": State.FAILED, "UNKNOWN": State.FAILED}
LOG_WINDOW = 512 * 1024
TAIL = 20


class SupervisorBackend:
    name = "supervisor"

    def __init__(self, context: BackendContext) -> None:
        self.ctx = context
        self.conf_option = context.options.get("conf")  # --supervisor-conf
        self._confs: dict[str | None, SupervisorConf] = {}

    # --- connection ---

    def conf(self, service: Any | None = None) -> SupervisorConf:
        explicit = self.conf_option
        if explicit is None and service is not None:
            explicit = service.options.get("supervisor", {}).get("conf")
        if explicit not in self._confs:
            try:
                path = find_conf(explicit)
            except FileNotFoundError as exc:
                raise BackendUnavailable(str(exc)) from None
            self._confs[explicit] = read_conf(path)
        return self._confs[explicit]

    def client(self, service: Any | None = None) -> Client:
        return Client(self.conf(service))

    def _call(self, client: Client, method: str, *args: Any) -> Any:
        try:
            return client.call(method, *args)
        except Unreachable as exc:
            raise BackendUnavailable(str(exc)) from None

    def available_for(self, service: Any) -> tuple[bool, str]:
        """`available` for the supervisord ``service`` names (``options.supervisor.conf``)."""
        return self.available(service)

    def available(self, service: Any | None = None) -> tuple[bool, str]:
        try:
            conf = self.conf(service)
            state = Client(conf).call("supervisor.getState")
        except (BackendUnavailable, Unreachable, ConfigError) as exc:
            return False, str(exc)
        return True, f"supervisord {state['statename']} at {conf.describe()}"

    def capabilities(self) -> dict[str, Support]:
        return {
            "readiness": Support.EMULATED,
            "watchdog": Support.UNSUPPORTED,
            "health_restart": Support.UNSUPPORTED,
            "resource_limits": Support.UNSUPPORTED,
            "log_rotation": Support.NATIVE,
            "instances": Support.NATIVE,
            "auto_start": Support.NATIVE,
            "shared_socket": Support.EMULATED,
        }

    # --- program files ---

    def _program_path(self, service: Any) -> Path:
        conf = self.conf(service)
        if conf.include_dir is None:
            raise OperationFailed(f"{conf.path} has no usable [include] section; add one such as"
                                  " '[include] files = conf.d/*.conf' so tts-ops can add programs")
        return conf.include_dir / f"{program_name(service)}.conf"

    def _write_program(self, service: Any, autostart: bool | None = None) -> tuple[bool, str]:
        path = self._program_path(service)
        try:
            old = path.read_text()
        except FileNotFoundError:
            old = ""
        if autostart is None:
            autostart = "autostart=true" in old
        log_file = str(service.log_path(self.ctx.state_dir))
        if service.instances == 1:  # numprocs logs are named by supervisord, per process
            claim_log_file(Path(log_file), service.name)
        else:
            private_dir(Path(log_file).parent, 0o750)
        text = render(service, log_file, autostart=autostart,
                      state_dir=str(self.ctx.state_dir))
        if not _replace(path, text, old):  # it holds the env values: 0600
            return False, ""
        import difflib  # a changed program only

        diff = "".join(difflib.unified_diff(old.splitlines(True), text.splitlines(True),
                                            str(path), str(path))) if old else ""
        return True, diff

    def _write_keeper(self, service: Any) -> bool:
        """Write (or remove) the program of the service's heartbeat keeper; whether its
        file changed. supervisord sends no heartbeat of its own: without a keeper a
        service's record would go stale after its ttl (and a leased registry such as etcd
        would delete it)."""
        from tts_ops.plugin import discovery_keeper, discovery_keeper_argv

        path = self._program_path(service).with_name(f"{keeper_name(service)}.conf")
        # the keeper asks supervisord too: a FATAL service behind its socket holder still
        # passes a tcp check
        alive = [sys.executable, "-m", "tts_ops_supervisor.alive",
                 str(self.conf(service).path), program_name(service)]
        spec_file = discovery_keeper(self.ctx.state_dir, service,
                                     self.ctx.options.get("discovery"), self.name, alive)
        if spec_file is None:
            try:
                path.unlink()
            except FileNotFoundError:
                return False
            return True
        text = render_keeper(service, discovery_keeper_argv(spec_file),
                             str(spec_file.with_suffix(".log")), _invoking_user())
        try:
            old = path.read_text()
        except FileNotFoundError:
            old = ""
        return _replace(path, text, old)

    def _keeper(self, client: Client, service: Any, *, start: bool) -> None:
        """Start or stop (waiting) the keeper; nothing when it has none or already is so."""
        name = keeper_name(service)
        method = "supervisor.startProcess" if start else "supervisor.stopProcess"
        try:
            self._call(client, method, f"{name}:{name}", not start)
        except RpcFault as exc:
            if exc.name not in ("ALREADY_STARTED", "NOT_RUNNING", "BAD_NAME"):
                raise OperationFailed(f"{service.name}: its heartbeat keeper: {exc}") from None

    def _apply_keeper(self, client: Client, service: Any, added: list[str],
                      changed: list[str], removed: list[str]) -> None:
        name = keeper_name(service)
        if name in changed or name in removed:
            self._keeper(client, service, start=False)
            self._call(client, "supervisor.removeProcessGroup", name)
        if name in changed or name in added:
            try:
                self._call(client, "supervisor.addProcessGroup", name)
            except RpcFault as exc:
                if exc.name != "ALREADY_ADDED":
                    raise

    def _apply(self, client: Client, service: Any) -> None:
        """reloadConfig, then add new programs and re-add changed ones; others keep running."""
        added, changed, removed = self._call(client, "supervisor.reloadConfig")[0]
        self._apply_keeper(client, service, added, changed, removed)
        group = program_name(service)
        if group in changed:
            was_running = any(p["statename"] in ("RUNNING", "STARTING", "BACKOFF")
                              for p in self._processes(client, service))
            self._stop_group(client, service)
            self._call(client, "supervisor.removeProcessGroup", group)
            self._call(client, "supervisor.addProcessGroup", group)
            if was_running:
                self._call(client, "supervisor.startProcessGroup", group, True)
        elif group in added:
            try:
                self._call(client, "supervisor.addProcessGroup", group)
            except RpcFault as exc:
                if exc.name != "ALREADY_ADDED":
                    raise

    def install(self, service: Any) -> str | None:
        client = self.client(service)
        self._call(client, "supervisor.getState")
        wrote, diff = self._write_program(service)
        if self._write_keeper(service) or wrote or not self._known(client, service):
            self._apply(client, service)
        return diff or None

    def _known(self, client: Client, service: Any) -> bool:
        return bool(self._processes(client, service))

    def uninstall(self, service: Any) -> None:
        client = self.client(service)
        group = program_name(service)
        self._keeper(client, service, start=False)
        self._stop_group(client, service)
        for name in (group, keeper_name(service)):
            try:
                self._call(client, "supervisor.removeProcessGroup", name)
            except RpcFault as exc:
                if exc.name != "BAD_NAME":
                    raise OperationFailed(f"{service.name}: {exc}") from None
        path = self._program_path(service)
        for file in (path, path.with_name(f"{keeper_name(service)}.conf")):
            try:
                file.unlink()
            except FileNotFoundError:
                pass
        from tts_ops.plugin import discovery_keeper_remove

        discovery_keeper_remove(self.ctx.state_dir, service.name)
        self._call(client, "supervisor.reloadConfig")
        self._forget(service)
        if service.owner == service.name:  # the service itself, not a deploy slot
            self.release_socket(service)

    def enable(self, service: Any) -> None:
        client = self.client(service)
        self._write_program(service, autostart=True)
        self._apply(client, service)

    def disable(self, service: Any) -> None:
        client = self.client(service)
        if not self._program_path(service).exists():
            return  # not installed: nothing starts it automatically
        self._write_program(service, autostart=False)
        self._apply(client, service)

    # --- what tts-ops remembers: when it started a program, and failures it saw ---

    def _memo_path(self, service: Any) -> Path:
        return self.ctx.state_dir / "supervisor" / f"{service.name}.json"

    def _memo(self, service: Any) -> dict[str, Any]:
        try:
            data = read_json(self._memo_path(service))
        except ValueError:
            data = None
        return data if isinstance(data, dict) else {}

    def _remember(self, service: Any, **values: Any) -> None:
        path = self._memo_path(service)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {**self._memo(service), **values})

    def _forget(self, service: Any) -> None:
        try:
            self._memo_path(service).unlink()
        except FileNotFoundError:
            pass

    # --- start / stop ---

    def _processes(self, client: Client, service: Any) -> list[dict[str, Any]]:
        group = program_name(service)
        return [p for p in self._call(client, "supervisor.getAllProcessInfo")
                if p["group"] == group]

    def _names(self, service: Any) -> list[str]:
        group = program_name(service)
        if service.instances == 1:
            return [f"{group}:{group}"]
        return [f"{group}:{group}-{port}"
                for port in range(service.port, service.port + service.instances)]

    def start(self, service: Any) -> ServiceStatus:
        client = self.client(service)
        self.install(service)
        procs = self._processes(client, service)
        if procs and all(p["statename"] == "RUNNING" for p in procs) and self._ready_now(service):
            self._keeper(client, service, start=True)
            return self._status(service, procs, None)
        self._check_command(service)
        from tts_ops.sockets import SocketUnavailable, hold_for  # socket: not for a status

        try:  # bound now, with a clear error, rather than by the program's first spawn
            hold_for(self.ctx.state_dir, service)
        except SocketUnavailable as exc:
            raise StartFailed(str(exc)) from None
        self._remember(service, started_at=time.time(), failure=None)
        try:
            for name in self._names(service):
                self._call(client, "supervisor.startProcess", name, True)
        except RpcFault as exc:
            if exc.name == "ALREADY_STARTED":
                pass
            else:
                # an early exit is SPAWN_ERROR ("Exited too quickly") or ABNORMAL_TERMINATION:
                # supervisord goes on retrying up to startretries, then FATAL; leave it to it
                cannot_run = exc.name in ("NO_FILE", "NOT_EXECUTABLE", "FAILED")
                self._start_failed(client, service, self._explain(client, service, exc),
                                   stop=cannot_run)
        self._wait_ready(client, service)
        self._keeper(client, service, start=True)
        status = self.status([service])[0]
        return status

    def release_socket(self, service: Any) -> None:
        from tts_ops.sockets import release

        release(self.ctx.state_dir, service.owner)

    def _check_command(self, service: Any) -> None:
        reason = command_problem(service)
        if reason is not None:
            self._remember(service, failure=reason)
            raise StartFailed(reason)

    def _explain(self, client: Client, service: Any, exc: RpcFault) -> str:
        procs = self._processes(client, service)
        spawnerr = next((p["spawnerr"] for p in procs if p.get("spawnerr")), "")
        exit_code = next((p["exitstatus"] for p in procs if p["statename"] in (
            "BACKOFF", "EXITED", "FATAL")), None)
        if exc.name in ("ABNORMAL_TERMINATION", "SPAWN_ERROR"):
            code = f" ({exit_code})" if exit_code else ""
            return (f"exited{code} within {startsecs(service)}s of starting; supervisord"
                    f" retries up to {service.max_restarts} times, then gives up (FATAL)")
        return f"{exc}{': ' + spawnerr if spawnerr else ''}"

    def _start_failed(self, client: Client, service: Any, reason: str, stop: bool) -> None:
        if stop:
            self._stop_group(client, service)
            self._remember(service, failure=reason)
        raise StartFailed(reason, self._tail(client, service, TAIL))

    def _check_ready(self, service: Any):
        """The health check; ``/ready`` rather than ``/health`` for the reference server."""
        from tts_ops.health import check_http, check_service

        hc = service.health_check
        if service.uses_reference_server and hc.type == "http" and not hc.url:
            url = service.health_url()
            return check_http(url[: len(url) - len(hc.path)] + "/ready", hc.timeout)
        return check_service(service)

    def _ready_now(self, service: Any) -> bool:
        return service.health_check.type == "none" or self._check_ready(service).ok

    def _wait_ready(self, client: Client, service: Any) -> None:
        """RUNNING is not ready: wait for the health check (``/ready`` for the reference server)."""
        if service.health_check.type == "none":
            return
        deadline = time.monotonic() + service.start_timeout
        last = ""
        while True:
            procs = self._processes(client, service)
            if any(p["statename"] not in ("RUNNING", "STARTING") for p in procs):
                self._start_failed(client, service, "exited before becoming ready", stop=False)
            result = self._check_ready(service)
            if result.ok:
                return
            last = result.detail
            if time.monotonic() > deadline:
                self._start_failed(client, service, f"not ready within"
                                   f" {service.start_timeout:g}s (last check: {last})", stop=True)
            time.sleep(0.05)

    def _stop_group(self, client: Client, service: Any, force: bool = False) -> None:
        procs = self._processes(client, service)
        pgids = [p["pid"] for p in procs if p["pid"]]
        for name in self._names(service):
            try:
                if force:
                    self._call(client, "supervisor.stopProcess", name, False)
                    for pid in pgids:
                        kill_group(pid, signal.SIGKILL)
                self._call(client, "supervisor.stopProcess", name, True)
            except RpcFault as exc:
                if exc.name not in ("NOT_RUNNING", "BAD_NAME"):
                    raise OperationFailed(f"{service.name}: {exc}") from None
        # supervisord is done when the main process is; the rest of the group may not be
        deadline = time.monotonic() + 10
        for pgid in pgids:
            while group_exists(pgid) and time.monotonic() < deadline:
                kill_group(pgid, signal.SIGKILL)
                time.sleep(0.01)

    def stop(self, service: Any, *, force: bool = False) -> ServiceStatus:
        client = self.client(service)
        # the keeper first: a heartbeat after the CLI deregistered would register it again
        self._keeper(client, service, start=False)
        if self._known(client, service):
            self._stop_group(client, service, force=force)
        self._remember(service, failure=None)
        status = self.status([service])[0]
        return status

    def restart(self, service: Any) -> ServiceStatus:
        self.stop(service)
        return self.start(service)

    # --- status ---

    def status(self, services: list[Any]) -> list[ServiceStatus]:
        by_conf: dict[str, list[Any]] = {}
        for svc in services:
            by_conf.setdefault(str(self.conf(svc).path), []).append(svc)
        out: dict[str, ServiceStatus] = {}
        for group in by_conf.values():
            client = self.client(group[0])
            try:
                # one round trip: every process, and the log that tells restarts
                infos, log = client.multicall([("supervisor.getAllProcessInfo", ()),
                                               ("supervisor.readLog", (-LOG_WINDOW, 0))])
            except Unreachable as exc:
                raise BackendUnavailable(str(exc)) from None
            if isinstance(infos, dict):
                raise BackendUnavailable(f"getAllProcessInfo failed: {infos.get('faultString')}")
            if isinstance(log, dict):  # a fault inside the multicall (no log file, ...)
                log = ""
            for svc in group:
                procs = [p for p in infos if p["group"] == program_name(svc)]
                out[svc.name] = self._status(svc, procs, log)
                keepers = [p for p in infos if p["group"] == keeper_name(svc)]
                if keepers:
                    self._keeper_state(svc, out[svc.name], keepers[0])
        return [out[svc.name] for svc in services]

    def _keeper_state(self, service: Any, status: ServiceStatus, keeper: dict[str, Any]
                      ) -> None:
        """A running service whose keeper is not running has no heartbeats: its record
        leaves discovery while it serves. Say so on its row."""
        status.extra["keeper"] = keeper["statename"]
        if status.state == State.RUNNING and keeper["statename"] != "RUNNING":
            status.extra["degraded"] = True
            status.reason = (f"its discovery keeper is {keeper['statename']}: its record is"
                             " not kept alive (see"
                             f" {self.ctx.state_dir}/keepers/{service.name}.log)")

    def _status(self, service: Any, procs: list[dict[str, Any]], log: str | None
                ) -> ServiceStatus:
        status = ServiceStatus(name=service.name, backend=self.name, host=service.host,
                               port=service.port)
        memo = self._memo(service)
        if not procs:
            if memo.get("failure"):
                status.state, status.reason = State.FAILED, memo["failure"]
            return status
        head = procs[0]
        status.extra = {"program": f"{head['group']}:{head['name']}",
                        "statename": head["statename"]}
        status.state = STATES.get(head["statename"], State.FAILED)
        for worst in ("FATAL", "BACKOFF", "STARTING", "STOPPING"):
            if any(p["statename"] == worst for p in procs):
                status.state = STATES[worst]
        if head["statename"] == "EXITED" and head["exitstatus"] != 0:
            status.state = State.FAILED
        if status.state == State.STOPPED and memo.get("failure"):
            status.state, status.reason = State.FAILED, memo["failure"]
        if head["statename"] in ("FATAL", "BACKOFF", "EXITED") or head.get("spawnerr"):
            status.exit_code = head.get("exitstatus")
            status.reason = head.get("spawnerr") or (
                f"exited {head.get('exitstatus')}; gave up after {service.max_restarts}"
                " restarts" if head["statename"] == "FATAL" else f"exited {head.get('exitstatus')}")
        if log is not None and memo.get("started_at"):
            spawns = _count_spawns(log, head["group"], memo["started_at"])
            status.restarts = max(0, spawns - len(procs))
        pids = [p["pid"] for p in procs if p["pid"]]
        if status.state in (State.RUNNING, State.STARTING, State.STOPPING) and pids:
            status.pid = pids[0]
            status.ready = status.state == State.RUNNING
            status.uptime_s = max(0.0, round(head["now"] - head["start"], 3))
            measured = usage([pid for p in pids for pid in (p, *descendants(p))])
            if measured is not None:
                status.cpu_percent, status.rss_bytes = measured
        if len(procs) > 1:
            status.extra["instances"] = [{"name": p["name"], "state": p["statename"],
                                          "pid": p["pid"]} for p in procs]
        return status

    # --- logs ---

    def log_sink(self, service: Any) -> tuple[str, Any]:
        return "supervisor", service.log_path(self.ctx.state_dir)

    def _tail(self, client: Client, service: Any, lines: int) -> list[str]:
        name = self._names(service)[0]
        try:
            text, _offset, _overflow = client.call("supervisor.tailProcessStdoutLog", name, 0,
                                                   65536)
        except (RpcFault, Unreachable):
            return []
        return text.splitlines()[-lines:] if lines else []

    def logs(self, service: Any, lines: int, follow_: bool) -> Iterator[str]:
        client = self.client(service)
        name = self._names(service)[0]
        try:
            text, offset, _overflow = self._call(client, "supervisor.tailProcessStdoutLog",
                                                 name, 0, 262144)
        except RpcFault as exc:
            raise OperationFailed(f"{service.name}: {exc}") from None
        yield from (text.splitlines()[-lines:] if lines else [])
        partial = ""
        while follow_:
            time.sleep(0.2)
            text, offset, _overflow = self._call(client, "supervisor.tailProcessStdoutLog",
                                                 name, offset, 262144)
            if text:
                *complete, partial = (partial + text).split("\n")
                yield from complete


def _replace(path: Path, text: str, old: str) -> bool:
    """Write ``text`` to ``path`` (0600, atomically) unless ``old``, what it holds, is the
    same and its mode right; whether it was written."""
    if text == old and path.stat().st_mode & 0o777 == PRIVATE:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, text.encode(), PRIVATE)
    return True


def _invoking_user() -> str | None:
    """The user running tts-ops, for the keeper's ``user=``; None for root. A supervisord
    run by root would otherwise write this user's registry and state as root; one run by
    this same user takes ``user=`` itself as a no-op."""
    import os

    if os.geteuid() == 0:
        return None
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def _count_spawns(log: str, group: str, since: float) -> int:
    """``spawned: 'NAME' with pid`` lines for the group's processes at or after ``since``."""
    count = 0
    needles = (f"spawned: '{group}' with pid", f"spawned: '{group}-")
    for line in log.splitlines():
        if not any(n in line for n in needles):
            continue
        try:
            stamp = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S"))
            stamp += int(line[20:23]) / 1000
        except ValueError:
            continue
        if stamp >= since - 0.01:
            count += 1
    return count
