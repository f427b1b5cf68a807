"""The ``systemd`` process backend: units rendered by `unit`, driven through systemctl.

"start returned" means ready, as on every backend: systemd itself waits for READY=1 on
notify units; for the others tts-ops waits for the health check. Failures tts-ops saw
(a start that timed out, a command that cannot run) are remembered in
``<state>/systemd/<name>.json`` because ``systemctl stop`` forgets them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tts_ops.plugin import (
    BackendContext,
    BackendUnavailable,
    OperationFailed,
    ServiceStatus,
    StartFailed,
    State,
    Support,
    command_problem,
)
from tts_ops.statefile import (
    PRIVATE,
    atomic_write_bytes,
    atomic_write_json,
    private_dir,
    read_json,
)
from tts_ops_systemd.options import options_for
from tts_ops_systemd.systemctl import (
    Systemctl,
    SystemctlError,
    journal_running,
    monotonic_now_usec,
)
from tts_ops_systemd.unit import (
    UnitPlan,
    holder_unit,
    instance_units,
    keeper_unit,
    render,
    render_holder,
    render_keeper,
    render_socket,
    socket_unit,
)

TAIL = 20


class SystemdBackend:
    name = "systemd"

    def __init__(self, context: BackendContext) -> None:
        self.ctx = context
        self.scope_option = context.options.get("scope")
        self._scopes: dict[str, str] = {}

    # --- where ---

    def _scope(self, service: Any | None = None) -> str:
        wanted = options_for(service, self.scope_option).scope if service else (
            self.scope_option or "auto")
        if wanted != "auto":
            return wanted
        if "auto" not in self._scopes:
            if os.geteuid() == 0 and Systemctl("system").reachable()[0]:
                self._scopes["auto"] = "system"
            else:
                self._scopes["auto"] = "user"
        return self._scopes["auto"]

    def _ctl(self, service: Any | None = None) -> Systemctl:
        return Systemctl(self._scope(service))

    def available(self) -> tuple[bool, str]:
        tried = []
        scopes = [self.scope_option] if self.scope_option not in (None, "auto") else [
            "system", "user"]
        for scope in scopes:
            ok, why = Systemctl(scope).reachable()
            if ok:
                return True, why
            tried.append(why)
        return False, "; ".join(tried)

    def _require(self, ctl: Systemctl) -> None:
        ok, why = ctl.reachable()
        if not ok:
            hint = " (use --scope user, or run as root)" if ctl.scope == "system" else (
                " (start one with: systemd --user, or log in through a session that runs it)")
            raise BackendUnavailable(f"no systemd reachable: {why}{hint}")

    def capabilities(self) -> dict[str, Support]:
        return {
            "readiness": Support.NATIVE,
            "watchdog": Support.NATIVE,
            "health_restart": Support.EMULATED,
            "resource_limits": Support.NATIVE,
            "log_rotation": Support.NATIVE if journal_running() else Support.UNSUPPORTED,
            "instances": Support.NATIVE,
            "auto_start": Support.NATIVE,
            "shared_socket": Support.NATIVE,
        }

    # --- units ---

    def plan(self, service: Any) -> UnitPlan:
        opts = options_for(service, self.scope_option)
        log_file = None if journal_running() else service.log_path(self.ctx.state_dir)
        return UnitPlan(service, self._scope(service), opts.hardening, log_file,
                        self.ctx.state_dir)

    def install(self, service: Any) -> str | None:
        """Write the unit (and its keeper's) and reload; a diff when an existing unit changed."""
        ctl = self._ctl(service)
        self._require(ctl)
        plan = self.plan(service)
        keeper_changed = self._install_keeper(plan, ctl)
        text = render(plan)
        if plan.log_file is not None:  # before the unit exists: systemd follows links
            if plan.templated:  # per-instance names (NAME@PORT.log), opened by systemd
                private_dir(plan.log_file.parent, 0o750)
            else:
                from tts_ops.logwriter import claim_log_file

                claim_log_file(plan.log_file, plan.service.name)
        changed, old = self._write_unit(ctl, plan.unit_name, text)  # Environment=: secrets
        if changed or keeper_changed:
            self._reload(ctl)
        if not changed or old is None:
            return None
        import difflib

        path = str(ctl.unit_dir() / plan.unit_name)
        return "".join(difflib.unified_diff(old.splitlines(True), text.splitlines(True),
                                            path, path))

    def _write_unit(self, ctl: Systemctl, name: str, text: str) -> tuple[bool, str | None]:
        """Write unit ``name`` (0600) unless it already says ``text``: (whether it was
        written, what it said before, None when new)."""
        path = ctl.unit_dir() / name
        try:
            old: str | None = path.read_text()
        except FileNotFoundError:
            old = None
        except PermissionError:
            raise OperationFailed(f"cannot read {path}: permission denied; use --scope user or"
                                  " run as root") from None
        if old == text and path.stat().st_mode & 0o777 == PRIVATE:
            return False, old
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, text.encode(), PRIVATE)
        except PermissionError:
            raise OperationFailed(f"cannot write {path}: permission denied; use --scope user"
                                  " or run as root") from None
        return True, old

    def _install_keeper(self, plan: UnitPlan, ctl: Systemctl) -> bool:
        """Write (or remove) the unit of the service's heartbeat keeper; whether it changed.

        systemd sends no heartbeat of its own: without a keeper a service's record would
        go stale after its ttl (and be deleted by a leased registry such as etcd)."""
        from tts_ops.plugin import discovery_keeper

        plan.keeper = discovery_keeper(self.ctx.state_dir, plan.service,
                                       self.ctx.options.get("discovery"), self.name)
        if plan.keeper is None:
            try:
                (ctl.unit_dir() / plan.keeper_unit).unlink()
            except FileNotFoundError:
                return False
            return True
        return self._write_unit(ctl, plan.keeper_unit, render_keeper(plan))[0]

    def _keeper_units(self, service: Any, ctl: Systemctl) -> list[str]:
        """The keeper's unit when one is installed (a stop takes it down with the service)."""
        name = keeper_unit(service)
        return [name] if (ctl.unit_dir() / name).exists() else []

    def _reload(self, ctl: Systemctl) -> None:
        try:
            ctl.run("daemon-reload")
        except SystemctlError as exc:
            raise OperationFailed(f"systemctl daemon-reload failed: {exc}") from None

    def uninstall(self, service: Any) -> None:
        ctl = self._ctl(service)
        self._require(ctl)
        plan = self.plan(service)
        units = plan.instance_units()
        keeper = self._keeper_units(service, ctl)
        ctl.run("stop", *units, *keeper, check=False)
        ctl.run("disable", plan.unit_name, check=False)
        for name in (plan.unit_name, *keeper):
            try:
                (ctl.unit_dir() / name).unlink()
            except FileNotFoundError:
                pass
        from tts_ops.plugin import discovery_keeper_remove

        discovery_keeper_remove(self.ctx.state_dir, service.name)
        self._reload(ctl)
        ctl.run("reset-failed", *units, check=False)
        self._forget_failure(service)
        if service.owner == service.name:  # the service itself, not a deploy slot
            self.release_socket(service)

    def enable(self, service: Any) -> None:
        ctl = self._ctl(service)
        self.install(service)
        try:
            ctl.run("enable", *self.plan(service).instance_units())
        except SystemctlError as exc:
            raise OperationFailed(f"{service.name}: systemctl enable failed: {exc}") from None

    def disable(self, service: Any) -> None:
        ctl = self._ctl(service)
        self._require(ctl)
        ctl.run("disable", *self.plan(service).instance_units(), check=False)

    # --- failures tts-ops saw ---

    def _failure_file(self, service: Any) -> Path:
        return self.ctx.state_dir / "systemd" / f"{service.name}.json"

    def _remember_failure(self, service: Any, reason: str) -> None:
        path = self._failure_file(service)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {"reason": reason, "ts": time.time()})

    def _forget_failure(self, service: Any) -> None:
        try:
            self._failure_file(service).unlink()
        except FileNotFoundError:
            pass

    def _recorded_failure(self, service: Any) -> str | None:
        try:
            data = read_json(self._failure_file(service))
        except ValueError:
            return None
        return data.get("reason") if isinstance(data, dict) else None

    # --- start / stop ---

    def start(self, service: Any) -> ServiceStatus:
        ctl = self._ctl(service)
        self._require(ctl)
        plan = self.plan(service)
        units = plan.instance_units()
        current = ctl.show(units)
        if all(current.get(u, {}).get("ActiveState") == "active" for u in units) and (
                self._healthy_now(service)):
            return self._status(service, current)
        self._check_command(service)
        self._hold_address(service, ctl)
        self.install(service)
        ctl.run("reset-failed", *units, check=False)
        self._forget_failure(service)
        before = ctl.show(units)
        proc = ctl.run("start", *units, check=False, timeout=service.start_timeout + 30)
        if proc.returncode != 0:
            self._fail_start(service, ctl, units, proc.stderr)
        self._wait_ready(service, ctl, units, before)
        status = self._status(service, ctl.show(units))
        return status

    # --- the shared address (socket: inherit) ---

    def _hold_address(self, service: Any, ctl: Systemctl) -> None:
        """Write and start the service's socket unit and its holder (before the unit that
        names it in ``Sockets=``); a socket unit that cannot bind fails the start."""
        shared = service.shared_address()
        if shared is None:
            return
        import shutil

        owner = service.owner
        sleep = shutil.which("sleep") or "/bin/sleep"
        written = [self._write_unit(ctl, name, text)[0] for name, text in (
            (socket_unit(owner), render_socket(owner, *shared)),
            (holder_unit(owner), render_holder(owner, sleep)))]
        if any(written):  # a new address is bound when the socket next starts (after a stop)
            self._reload(ctl)
        proc = ctl.run("start", socket_unit(owner), holder_unit(owner), check=False)
        if proc.returncode != 0:
            where = f"{shared[0]}:{shared[1]}"
            raise StartFailed(f"cannot listen on {where}: systemd could not start"
                              f" {socket_unit(owner)} (is the address in use?)")

    def release_socket(self, service: Any) -> None:
        ctl = self._ctl(service)
        owner = service.owner
        units = [holder_unit(owner), socket_unit(owner)]
        if not any((ctl.unit_dir() / u).exists() for u in units):
            return
        ctl.run("stop", *units, check=False)
        for unit in units:
            try:
                (ctl.unit_dir() / unit).unlink()
            except FileNotFoundError:
                pass
        self._reload(ctl)
        ctl.run("reset-failed", *units, check=False)

    def _check_command(self, service: Any) -> None:
        reason = command_problem(service)
        if reason is not None:
            self._remember_failure(service, reason)
            raise StartFailed(reason)

    def _describe(self, props: dict[str, str], service: Any) -> str:
        result = props.get("Result", "?")
        code, status = props.get("ExecMainCode"), props.get("ExecMainStatus")
        if result == "timeout":
            return f"not ready within {service.start_timeout:g}s (systemd start timeout)"
        if result == "start-limit-hit":
            return (f"gave up after {service.max_restarts} restarts within"
                    f" {service.restart_window:g}s (start limit hit)")
        if status == "203":
            return f"cannot execute {service.argv()[0]!r} (systemd status 203/EXEC)"
        if code == "1":
            what = f"exited {status}"
        elif code == "2":
            what = f"killed by signal {status}"
        else:
            return f"failed ({result})"
        restarts = int(props.get("NRestarts") or 0)
        if props.get("ActiveState") == "failed" and 0 < service.max_restarts <= restarts:
            # systemd 252 keeps Result=exit-code when the burst runs out during restarts
            return (f"{what}; gave up after {restarts} restarts within"
                    f" {service.restart_window:g}s (start limit)")
        return f"{what} ({result})"

    def _fail_start(self, service: Any, ctl: Systemctl, units: list[str], stderr: str,
                    stop: bool = True) -> None:
        props = ctl.show(units)
        # the unit that failed, not the first: with instances, one may fail while another runs
        failed = [p for p in (props.get(u, {}) for u in units)
                  if p.get("Result", "success") != "success" or p.get("ActiveState") == "failed"]
        first = failed[0] if failed else props.get(units[0], {})
        reason = self._describe(first, service)
        if len(units) > 1 and failed:
            reason = f"{first.get('Id', units[0])}: {reason}"
        restarting = first.get("SubState") in ("auto-restart",) or first.get(
            "ActiveState") == "activating"
        if stop and not (restarting and first.get("Result") not in ("timeout",)):
            ctl.run("stop", *units, check=False)
        self._remember_failure(service, reason)
        raise StartFailed(reason, self._tail(service, TAIL) or stderr.strip().splitlines())

    def _wait_ready(self, service: Any, ctl: Systemctl, units: list[str],
                    before: dict[str, dict[str, str]]) -> None:
        """Notify units are ready once systemctl start returned; others need a health check."""
        if service.speaks_notify:
            return
        from tts_ops.health import check_service

        deadline = time.monotonic() + service.start_timeout
        settle = time.monotonic() + service.start_seconds
        first_pid = None
        while True:
            props = ctl.show(units)
            head = props.get(units[0], {})
            pid = head.get("MainPID")
            first_pid = first_pid or pid
            restarted = head.get("NRestarts") != before.get(units[0], {}).get("NRestarts", "0")
            if head.get("ActiveState") != "active" or pid != first_pid or restarted:
                self._fail_start(service, ctl, units, "", stop=False)
            if service.health_check.type == "none":
                if time.monotonic() >= settle:
                    return
            elif check_service(service).ok:
                return
            if time.monotonic() > deadline:
                reason = f"not ready within {service.start_timeout:g}s (health check never passed)"
                ctl.run("stop", *units, check=False)
                self._remember_failure(service, reason)
                raise StartFailed(reason, self._tail(service, TAIL))
            time.sleep(0.05)

    def _healthy_now(self, service: Any) -> bool:
        if service.speaks_notify or service.health_check.type == "none":
            return True
        from tts_ops.health import check_service

        return check_service(service).ok

    def stop(self, service: Any, *, force: bool = False) -> ServiceStatus:
        ctl = self._ctl(service)
        self._require(ctl)
        units = self.plan(service).instance_units()
        if force:
            ctl.run("kill", "--signal=SIGKILL", *units, check=False)
        # the keeper too: a heartbeat after the CLI deregistered would register it again
        ctl.run("stop", *units, *self._keeper_units(service, ctl), check=False,
                timeout=service.stop_timeout + 60)
        ctl.run("reset-failed", *units, check=False)
        self._forget_failure(service)
        status = self._status(service, ctl.show(units))
        return status

    def restart(self, service: Any) -> ServiceStatus:
        self.stop(service)
        return self.start(service)

    # --- status ---

    def status(self, services: list[Any]) -> list[ServiceStatus]:
        by_scope: dict[str, list[Any]] = {}
        for svc in services:
            by_scope.setdefault(self._scope(svc), []).append(svc)
        out: dict[str, ServiceStatus] = {}
        for scope, group in by_scope.items():
            ctl = Systemctl(scope)
            units = [u for svc in group for u in instance_units(svc)]
            # the heartbeat keepers too (their spec exists when one is installed): a
            # service whose keeper cannot run leaves discovery while it serves
            kept = [svc for svc in group if (self.ctx.state_dir / "keepers"
                                             / f"{svc.name}.json").exists()]
            try:
                props = ctl.show([*units, *(keeper_unit(svc) for svc in kept)])
            except SystemctlError:
                self._require(ctl)  # says why the manager is unreachable
                raise
            for svc in group:
                out[svc.name] = self._status(svc, props)
                if svc in kept:
                    self._keeper_state(svc, out[svc.name], props.get(keeper_unit(svc), {}))
        return [out[svc.name] for svc in services]

    def _keeper_state(self, service: Any, status: ServiceStatus, p: dict[str, str]) -> None:
        active = p.get("ActiveState") or "inactive"
        status.extra["keeper"] = f"{active} ({p.get('SubState', '?')})"
        # a keeper starts once its service is active (Upholds=): "inactive" right after a
        # start is not trouble; auto-restart and failed are
        if status.state == State.RUNNING and (active == "failed" or
                                              p.get("SubState") == "auto-restart"):
            status.extra["degraded"] = True
            status.reason = (f"its discovery keeper {keeper_unit(service)} is"
                             f" {status.extra['keeper']}: its record is not kept alive")

    def _status(self, service: Any, props: dict[str, dict[str, str]]) -> ServiceStatus:
        units = instance_units(service)
        parts = [self._one(service, props.get(u, {})) for u in units]
        status = parts[0]
        if len(parts) > 1:
            status.restarts = sum(p.restarts for p in parts)
            status.ready = all(p.ready for p in parts)
            states = {p.state for p in parts}
            for worst in (State.FAILED, State.BACKOFF, State.STARTING, State.STOPPING,
                          State.UNHEALTHY):
                if worst in states:
                    status.state = worst
                    break
            if status.rss_bytes is not None:
                status.rss_bytes = sum(p.rss_bytes or 0 for p in parts)
            status.extra["instances"] = [p.to_json() for p in parts]
        if status.state == State.STOPPED:
            recorded = self._recorded_failure(service)
            if recorded:
                status.state, status.reason = State.FAILED, recorded
        return status

    def _one(self, service: Any, p: dict[str, str]) -> ServiceStatus:
        active, sub, result = p.get("ActiveState"), p.get("SubState"), p.get("Result")
        status = ServiceStatus(name=service.name, backend=self.name, host=service.host,
                               port=service.port)
        status.extra = {"unit": p.get("Id"), "active_state": active, "sub_state": sub,
                        "result": result, "scope": self._scope(service)}
        if active == "active" or active == "reloading":
            status.state = State.RUNNING
        elif active == "activating":
            status.state = State.BACKOFF if sub == "auto-restart" else State.STARTING
        elif active == "deactivating":
            status.state = State.STOPPING
        elif active == "failed":
            status.state = State.FAILED
            status.reason = self._describe(p, service)
        else:
            status.state = State.STOPPED
        try:
            status.restarts = int(p.get("NRestarts") or 0)
        except ValueError:
            pass
        code, exit_status = p.get("ExecMainCode"), p.get("ExecMainStatus")
        if code == "1" and exit_status is not None:
            status.exit_code = int(exit_status)
        elif code == "2" and exit_status is not None:
            status.exit_signal = int(exit_status)
        pid = int(p.get("MainPID") or 0)
        if pid and status.state in (State.RUNNING, State.STARTING, State.STOPPING):
            status.pid = pid
            status.ready = status.state == State.RUNNING
            entered = int(p.get("ExecMainStartTimestampMonotonic") or 0)
            if entered:
                status.uptime_s = round((monotonic_now_usec() - entered) / 1e6, 3)
            memory = p.get("MemoryCurrent", "")
            if memory.isdigit():
                status.rss_bytes = int(memory)
            cpu = p.get("CPUUsageNSec", "")
            if cpu.isdigit() and status.uptime_s:
                status.cpu_percent = round(int(cpu) / 1e9 / max(status.uptime_s, 1e-3) * 100, 1)
        text = p.get("StatusText")
        status.status_text = text or None
        return status

    # --- logs ---

    def log_sink(self, service: Any) -> tuple[str, Any]:
        plan = self.plan(service)
        if plan.log_file is None:
            return "journald", (plan.instance_units()[0], plan.scope)
        return "file", plan.log_file

    def _tail(self, service: Any, lines: int) -> list[str]:
        plan = self.plan(service)
        if plan.log_file is None:
            import subprocess

            from tts_ops_systemd.journal import journal_command

            cmd = journal_command(plan.instance_units()[0], "cat", "-n", str(lines))
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            return out.stdout.splitlines()
        from tts_ops.logread import tail

        return tail(plan.log_file if not plan.templated else _instance_log(plan), lines)

    def logs(self, service: Any, lines: int, follow_: bool) -> Iterator[str]:
        plan = self.plan(service)
        if plan.log_file is None:
            import subprocess

            from tts_ops_systemd.journal import journal_command

            cmd = journal_command(plan.instance_units()[0], "cat", "-n", str(lines),
                                  *(["-f"] if follow_ else []))
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
            assert proc.stdout is not None
            try:
                for line in proc.stdout:
                    yield line.rstrip("\n")
            finally:  # ended early (SIGTERM, a closed reader): journalctl -f would stay
                if proc.poll() is None:
                    proc.kill()
                proc.stdout.close()
                proc.wait()
            return
        path = plan.log_file if not plan.templated else _instance_log(plan)
        from tts_ops.logread import follow, tail

        yield from tail(path, lines)
        if follow_:
            yield from follow(path)


def _instance_log(plan: UnitPlan) -> Path:
    assert plan.log_file is not None
    name = plan.log_file.name
    stem = name[:-4] if name.endswith(".log") else name
    return plan.log_file.with_name(f"{stem}@{plan.service.port}.log")

