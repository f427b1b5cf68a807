"""The ``manual`` process backend, CLI side: stateless, talks to supervisors.

Each service has a directory ``<state>/manual/<name>/`` holding ``spec.json`` (what
to run), ``status.json`` (written by its supervisor), ``events.jsonl`` and the
supervisor's own ``supervise.log``. Liveness is PID plus start time, never a PID alone.
"""

from __future__ import annotations

import errno
import math
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tts_ops import cgroups
from tts_ops.logwriter import claim_log_file
from tts_ops.plugin import (
    BackendContext,
    BackendEvent,
    OperationFailed,
    ServiceStatus,
    StartFailed,
    State,
    Support,
    command_problem,
    ensure_writable_dir,
)
from tts_ops.procinfo import (
    descendants,
    group_exists,
    group_members,
    is_alive,
    kill_group,
    usage,
)
from tts_ops.statefile import atomic_write_json, locked, open_nofollow, private_dir, read_json
from tts_ops_manual.spec import build_spec

POLL = 0.01
TAIL_ON_FAILURE = 20


class ManualBackend:
    name = "manual"

    def __init__(self, context: BackendContext) -> None:
        self.ctx = context
        self.root = context.state_dir / "manual"

    # --- contract: discovery of the backend itself ---

    def available(self) -> tuple[bool, str]:
        return True, "the manual backend needs no process manager"

    def capabilities(self) -> dict[str, Support]:
        return {
            "readiness": Support.NATIVE,
            "watchdog": Support.NATIVE,
            "health_restart": Support.NATIVE,
            "resource_limits": Support.UNSUPPORTED,
            "log_rotation": Support.NATIVE,
            "instances": Support.UNSUPPORTED,
            "auto_start": Support.UNSUPPORTED,
            "shared_socket": Support.NATIVE,
        }

    # --- install & co: nothing to install ---

    def _nothing(self, service: Any, action: str) -> None:
        raise OperationFailed(
            f"{service.name}: the manual backend cannot {action} (it has no boot-time manager);"
            " use --process-manager systemd or supervisor"
        )

    def install(self, service: Any) -> None:
        self._nothing(service, "install")

    def uninstall(self, service: Any) -> None:
        self.stop(service)
        if service.owner == service.name:  # the service itself, not a deploy slot
            self.release_socket(service)

    def enable(self, service: Any) -> None:
        self._nothing(service, "enable auto-start")

    def disable(self, service: Any) -> None:
        self._nothing(service, "disable auto-start")

    def release_socket(self, service: Any) -> None:
        from tts_ops.sockets import release

        release(self.ctx.state_dir, service.owner)

    # --- paths and state ---

    def service_dir(self, name: str) -> Path:
        return self.root / name

    def read_status(self, name: str) -> dict[str, Any] | None:
        try:
            data = read_json(self.service_dir(name) / "status.json")
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    @staticmethod
    def supervisor_alive(st: dict[str, Any] | None) -> bool:
        return bool(st) and is_alive(st.get("supervisor_pid"), st.get("supervisor_ticks"))

    # --- start ---

    def start(self, service: Any) -> ServiceStatus:
        ensure_writable_dir(self.ctx.state_dir)
        sdir = self.service_dir(service.name)
        private_dir(sdir)
        with locked(sdir / ".lock"):
            st = self.read_status(service.name)
            if self.supervisor_alive(st):
                if st.get("state") in ("running", "unhealthy") and st.get("ready"):
                    return self._to_status(service, st)
                if st.get("state") == "stopping":
                    self._wait_supervisor_exit(st, service.stop_timeout + 10)
                elif st.get("state") in ("failed", "stopped"):
                    self._wait_supervisor_exit(st, 10)  # it wrote its last status, exiting
                else:
                    return self._wait_ready(service, st, None)
            self._cleanup_leftovers(st)
            cgroups.sweep()
            claim_log_file(service.log_path(self.ctx.state_dir), service.name)
            problem = command_problem(service)
            if problem is not None:  # fail now, not after start_timeout of retries
                atomic_write_json(sdir / "status.json", {
                    "name": service.name, "state": "failed", "ready": False, "pid": None,
                    "restarts": 0, "reason": problem, "updated_at": time.time()})
                raise StartFailed(problem, [])
            from tts_ops.sockets import SocketUnavailable, hold_for

            try:
                held = hold_for(self.ctx.state_dir, service)
            except SocketUnavailable as exc:
                raise StartFailed(str(exc)) from None
            if held is None or service.shared_address() != (service.host, service.port):
                self._check_port(service)  # an address of its own (a slot's private port)
            spec = build_spec(service, self.ctx.state_dir, self.ctx.options.get("discovery"))
            spec["listen"] = {"socket": str(held)} if held is not None else None
            atomic_write_json(sdir / "spec.json", spec)
            try:
                os.unlink(sdir / "status.json")
            except FileNotFoundError:
                pass
            import subprocess

            with os.fdopen(open_nofollow(sdir / "supervise.log",
                                         os.O_WRONLY | os.O_APPEND | os.O_CREAT), "ab") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "tts_ops_manual.supervise", str(sdir)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True, close_fds=True,
                )
            # hold the lock until the supervisor has said who it is: a second start that
            # got the lock sooner would find no status, and spawn a second supervisor
            try:
                while proc.poll() is None and self.read_status(service.name) is None:
                    time.sleep(POLL)
            except BaseException:
                # interrupted before it said who it is: no stop could find it, so end it
                # here (SIGTERM: it stops whatever it started, as on any stop)
                if proc.poll() is None and self.read_status(service.name) is None:
                    proc.terminate()
                    proc.wait(timeout=service.stop_timeout + 15)
                raise
        return self._wait_ready(service, None, proc)

    def _wait_ready(self, service: Any, st: dict | None, proc: Any) -> ServiceStatus:
        deadline = time.monotonic() + service.start_timeout
        while True:
            st = self.read_status(service.name) or st
            if st and st.get("ready") and st.get("state") in ("running", "unhealthy"):
                status = self._to_status(service, st)
                return status
            dead = proc.poll() is not None if proc is not None else not self.supervisor_alive(st)
            if (st and st.get("state") in ("failed", "stopped")) or (dead and st is not None):
                break
            if dead and st is None:
                raise StartFailed(
                    "the supervisor exited before writing its status",
                    _last_lines(self.service_dir(service.name) / "supervise.log"),
                )
            if time.monotonic() > deadline or next_try_after(st, deadline):
                if st and self.supervisor_alive(st):
                    os.kill(st["supervisor_pid"], signal.SIGUSR2)
                    self._wait_supervisor_exit(st, 10)
                st = self.read_status(service.name) or st
                break
            time.sleep(POLL)
        if proc is not None:
            proc.wait(timeout=10)
        status = self._to_status(service, st or {})
        reason = status.reason or f"not ready within {service.start_timeout:g}s"
        if status.state == State.STOPPED and status.reason:
            reason = f"{status.reason} before becoming ready"
        from tts_ops.logread import tail

        raise StartFailed(reason, tail(service.log_path(self.ctx.state_dir), TAIL_ON_FAILURE))

    def _check_port(self, service: Any) -> None:
        import socket

        if not service.uses_port:
            return
        host = service.host if service.host not in ("localhost", "") else "127.0.0.1"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, service.port))
                return
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    return
        from tts_ops.procinfo import port_holder

        holder = port_holder(service.port)
        raise StartFailed(f"port {service.port} on {host} is already in use{holder}")

    # --- stop ---

    def stop(self, service: Any, *, force: bool = False) -> ServiceStatus:
        st = self.read_status(service.name)
        if self.supervisor_alive(st):
            os.kill(st["supervisor_pid"], signal.SIGQUIT if force else signal.SIGTERM)
            if not self._wait_supervisor_exit(st, service.stop_timeout + 15):
                os.kill(st["supervisor_pid"], signal.SIGKILL)
        self._cleanup_leftovers(st)
        final = self.read_status(service.name) or {}
        status = self._to_status(service, final)
        if status.state not in (State.FAILED,):
            status.state = State.STOPPED
        status.pid, status.ready = None, False
        return status

    def restart(self, service: Any) -> ServiceStatus:
        self.stop(service)
        return self.start(service)

    def _wait_supervisor_exit(self, st: dict[str, Any], timeout: float) -> bool:
        import select

        pid = st["supervisor_pid"]
        try:
            fd = os.pidfd_open(pid)
        except (ProcessLookupError, OSError):
            return not self.supervisor_alive(st)
        try:
            deadline = time.monotonic() + timeout
            while self.supervisor_alive(st):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                select.select([fd], [], [], min(left, 0.5))
            return True
        finally:
            os.close(fd)

    def _cleanup_leftovers(self, st: dict[str, Any] | None) -> None:
        """A supervisor killed by SIGKILL may leave processes the service forked: end them."""
        if not st or self.supervisor_alive(st):
            return
        if st.get("cgroup"):
            from pathlib import Path as _Path

            from tts_ops import cgroups

            cgroup = _Path(st["cgroup"])
            final = (self.read_status(st.get("name", "")) or st).get("state")
            if final not in ("stopped", "failed") and cgroups.members(cgroup):
                cgroups.kill(cgroup)  # it died mid-way (its keeper normally did this)
            cgroups.remove(cgroup)
        pgid = st.get("pgid")
        if pgid and group_exists(pgid) and group_members(pgid):
            kill_group(pgid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while group_members(pgid) and time.monotonic() < deadline:
                time.sleep(POLL)

    # --- status ---

    def status(self, services: list[Any]) -> list[ServiceStatus]:
        return [self._to_status(svc, self.read_status(svc.name) or {}, measure=True)
                for svc in services]

    def _to_status(self, service: Any, st: dict[str, Any], measure: bool = False
                   ) -> ServiceStatus:
        status = ServiceStatus(name=service.name, backend=self.name, host=service.host,
                               port=service.port)
        if not st:
            return status
        state = st.get("state", "stopped")
        status.restarts = st.get("restarts", 0)
        status.exit_code = st.get("exit_code")
        status.exit_signal = st.get("exit_signal")
        status.status_text = st.get("status_text")
        status.reason = st.get("reason")
        status.extra = {"supervisor_pid": st.get("supervisor_pid"), "health": st.get("health"),
                        "log_file": st.get("log_file"),
                        # lines lost while the log's disk was full or failing
                        "log_dropped": st.get("log_dropped", 0)}
        alive = self.supervisor_alive(st)
        if not alive and state not in ("stopped", "failed"):
            # the supervisor died without saying so: report the truth
            state = "failed"
            status.reason = f"its supervisor (pid {st.get('supervisor_pid')}) died"
        status.state = State(state)
        pid, ticks = st.get("pid"), st.get("pid_ticks")
        if alive and is_alive(pid, ticks):
            status.pid = pid
            status.ready = bool(st.get("ready"))
            started = st.get("started_at")
            status.uptime_s = round(time.time() - started, 3) if started else None
            if measure:
                status.cpu_percent, status.rss_bytes = _group_usage(pid)
        return status

    # --- events ---

    def events(self, services: list[Any], follow: bool = False, last: int | None = None,
               stop=None) -> Iterator[BackendEvent]:
        """Lifecycle events from the supervisors' ``events.jsonl`` files, oldest first.

        ``last`` keeps only the newest N of the events already written; ``follow`` then
        waits for new ones until ``stop()`` is true.
        """
        files = {svc.name: self.service_dir(svc.name) / "events.jsonl" for svc in services}
        offsets = dict.fromkeys(files, 0)

        def fresh() -> list[BackendEvent]:
            found: list[BackendEvent] = []
            for name, path in files.items():
                start, data = _read_from(path, offsets[name])
                complete = data[: data.rfind(b"\n") + 1]
                offsets[name] = start + len(complete)
                found.extend(_parse_events(complete))
            return sorted(found, key=lambda e: e.ts)

        backlog = fresh()
        if last is not None:
            backlog = backlog[len(backlog) - last :] if last > 0 else []
        yield from backlog
        while follow and (stop is None or not stop()):
            batch = fresh()
            yield from batch
            if not batch:
                time.sleep(0.1)

    # --- logs ---

    def rotate_logs(self, service: Any) -> str:
        st = self.read_status(service.name)
        if not self.supervisor_alive(st):
            return "not running: nothing to rotate"
        os.kill(st["supervisor_pid"], signal.SIGUSR1)
        return "rotated (the rotated file is gzipped in the background)"

    def logs(self, service: Any, lines: int, follow_: bool) -> Iterator[str]:
        path = service.log_path(self.ctx.state_dir)
        from tts_ops.logread import follow, tail

        yield from tail(path, lines)
        if follow_:
            yield from follow(path)


def next_try_after(st: dict[str, Any] | None, deadline: float) -> bool:
    """Whether ``st`` is in backoff with its next try due after ``deadline`` (both on
    CLOCK_MONOTONIC): then a start has nothing left to wait for. Never wall time: a clock
    stepped back an hour would make every try look an hour away."""
    if not st or st.get("state") != "backoff":
        return False
    due = st.get("restart_due")
    if not isinstance(due, (int, float)) or isinstance(due, bool) or not math.isfinite(due):
        return False  # an older supervisor's status, or a damaged one: wait it out
    return due > deadline


def _read_from(path: Path, offset: int) -> tuple[int, bytes]:
    """(where reading started, bytes from there); starts over if the file was recreated."""
    try:
        with open(path, "rb") as fh:
            if offset > os.fstat(fh.fileno()).st_size:
                offset = 0
            fh.seek(offset)
            return offset, fh.read()
    except FileNotFoundError:
        return 0, b""


def _parse_events(data: bytes) -> list[BackendEvent]:
    import json

    out = []
    for line in data.splitlines():
        try:
            raw = json.loads(line)
        except ValueError:
            continue
        out.append(BackendEvent(ts=raw.get("ts", 0.0), service=raw.get("service", "?"),
                                kind=raw.get("event", "?"), pid=raw.get("pid"),
                                restarts=raw.get("restarts", 0), exit_code=raw.get("exit_code"),
                                exit_signal=raw.get("exit_signal"),
                                reason=raw.get("reason") or raw.get("detail")))
    return out


def _group_usage(pid: int) -> tuple[float | None, int | None]:
    """CPU percent (average since start) and RSS of a process and its descendants."""
    measured = usage([pid, *descendants(pid)])
    return measured if measured is not None else (None, None)


def _last_lines(path: Path) -> list[str]:
    from tts_ops.logread import tail

    return tail(path, TAIL_ON_FAILURE) if path.exists() else []

