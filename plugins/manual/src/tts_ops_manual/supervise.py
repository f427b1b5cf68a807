"""``python -m tts_ops_manual.supervise DIR``: supervise one service (runit/s6 lineage).

One supervisor per service, detached from the CLI (new session), owning exactly one
service process group. It reads ``DIR/spec.json``, keeps ``DIR/status.json`` up to
date (atomically), writes the service's output to its log file with rotation, and
answers signals:

========  ===============================================
SIGTERM   stop gracefully (stop_signal, stop_timeout, SIGKILL), then exit
SIGQUIT   stop at once (SIGKILL to the group), then exit
SIGHUP    restart the service (not counted as a failure)
SIGUSR1   rotate the log file now
SIGUSR2   give up starting: kill, state ``failed``, exit (the CLI's start deadline)
========  ===============================================

It imports only the standard library and tts_ops's stdlib-only helpers, keeping its
RSS small. It is a child subreaper, so processes the service forks stay visible to it
and are killed on stop; the service gets PR_SET_PDEATHSIG so that killing the
supervisor with SIGKILL does not leave the service running forever.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import selectors
import signal
import socket
import sys
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tts_ops import cgroups
from tts_ops.logwriter import RotatingLogWriter
from tts_ops.procinfo import kill_group, start_ticks
from tts_ops.sockets import SocketUnavailable, activation_env
from tts_ops.sockets import fetch as fetch_socket
from tts_ops.spawn import credentials_for, spawn
from tts_ops.spawn import libc as _libc
from tts_ops.statefile import append_line, atomic_write_bytes, atomic_write_json, private_dir
from tts_ops_manual.exits import Exits, backoff_delay  # noqa: F401  (backoff_delay: tests)
from tts_ops_manual.keeper import Keeper
from tts_ops_manual.output import (  # noqa: F401  (MAX_PARTIAL, has_long_line: tests)
    MAX_PARTIAL,
    PIPE_SIZE,
    OutputPipe,
    cut_long_lines,
    has_long_line,
)
from tts_ops_manual.readiness import Readiness

if TYPE_CHECKING:
    from tts_ops_manual.probe import Probe

PR_SET_CHILD_SUBREAPER = 36
F_SETPIPE_SZ = 1031
COMPRESS_DELAY = 1.0  # seconds a rotated log waits, so a burst is written before it is gzipped
STATUS_RETRY = 1.0  # seconds between attempts to write a status the disk refused




class Supervisor(Exits, Keeper, Readiness, OutputPipe):
    """One service's supervisor: its state, spawn, timers, signals and loop here; exits,
    restarts and stopping, the keeper and heartbeats, readiness and health, and the output
    are parts of it (`tts_ops_manual.exits`, `.keeper`, `.readiness`, `.output`)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.spec: dict[str, Any] = json.loads((directory / "spec.json").read_text())
        self.sel = selectors.DefaultSelector()
        self.signals: deque[int] = deque()
        self.timers: dict[str, float] = {}
        self.child_pid: int | None = None
        self.pgid: int | None = None
        self.pipe_fd: int | None = None
        self.pipe_paused = False  # off the selector for COALESCE_SECONDS
        self.partial = b""
        self.probe: Probe | None = None
        self.probe_fd: int | None = None
        self.probe_purpose = ""
        self.health_failures = 0
        self.failures: list[float] = []
        self.stop_mode: str | None = None  # "graceful" | "force" | "restart" | "giveup"
        self.helpers: set[int] = set()  # forked heartbeat writers and keepers
        self.beaters: set[int] = set()  # the heartbeat writers among them
        self.keeper: int | None = None
        self.listen_fd: int | None = None  # the service's shared address (socket: inherit)
        self.cgroup = cgroups.create(f"{self.spec['name']}.{os.getpid()}")
        self.exiting = False
        self.ignored_notify = 0  # datagrams from processes outside the service
        self.status: dict[str, Any] = {
            "name": self.spec["name"],
            "supervisor_pid": os.getpid(),
            "supervisor_ticks": start_ticks(os.getpid()),
            "state": "starting",
            "ready": False,
            "pid": None,
            "pid_ticks": None,
            "pgid": None,
            "restarts": 0,
            "exit_code": None,
            "exit_signal": None,
            "status_text": None,
            "reason": None,
            "started_at": None,
            "ready_at": None,
            "updated_at": time.time(),
            "health": "unknown",
            "health_detail": None,
            "log_file": self.spec["log_file"],
            "cgroup": str(self.cgroup) if self.cgroup else None,
        }
        spec = self.spec
        self.log = RotatingLogWriter(Path(spec["log_file"]), spec["log_max_bytes"],
                                     spec["log_backups"], compress_delay=COMPRESS_DELAY)

    # --- plumbing -------------------------------------------------------

    def write_status(self, **changes: Any) -> None:
        self.status.update(changes)
        if self.status.get("state") != "backoff":  # only a backoff has a next try
            self.status.pop("restart_due", None)
        self.status["updated_at"] = time.time()
        self.status["log_dropped"] = self.log.dropped
        try:
            # atomic, not durable: after a reboot no process it describes is left, and
            # the CLI checks each pid's identity anyway
            atomic_write_json(self.dir / "status.json", self.status, durable=False)
        except OSError:
            # a full or failing state disk must not end supervision: keep the service
            # running and write the status again soon
            self.timers["status_retry"] = time.monotonic() + STATUS_RETRY
        else:
            self.timers.pop("status_retry", None)

    def event(self, name: str, **data: Any) -> None:
        record = {"ts": time.time(), "event": name, "service": self.spec["name"],
                  "pid": self.child_pid, "restarts": self.status["restarts"], **data}
        try:
            append_line(self.dir / "events.jsonl", json.dumps(record) + "\n")
        except OSError:
            self.status["events_dropped"] = self.status.get("events_dropped", 0) + 1

    def supervisor_log(self, message: str) -> None:
        line = json.dumps({"ts": time.time(), "level": "INFO", "logger": "tts-ops-manual",
                           "msg": message, "service": self.spec["name"]})
        self.log.write((line + "\n").encode())

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.signals.append(signum)

    def setup(self) -> None:
        _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        # the supervisor joins its service's cgroup once: every generation is then born in
        # it, with no migration (~10 ms in the kernel) on the respawn path
        if self.cgroup is not None and not cgroups.join(self.cgroup):
            self.cgroup = None
            self.status["cgroup"] = None
        rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.wake_fd = rfd
        signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1,
                    signal.SIGUSR2, signal.SIGCHLD, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        self.sel.register(rfd, selectors.EVENT_READ, "wake")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        token = f"tts-ops-manual/{self.spec['name']}/{os.getpid()}/{os.urandom(6).hex()}"
        self.notify.bind("\0" + token)
        # abstract sockets are visible to every user (/proc/net/unix): the kernel's
        # credentials on each datagram tell us who sent it, and only the service may speak
        self.notify.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.notify.setblocking(False)
        self.notify_addr = "@" + token
        self.sel.register(self.notify, selectors.EVENT_READ, "notify")

    # --- spawning -------------------------------------------------------

    def spawn(self) -> None:
        spec = self.spec
        env = dict(os.environ)
        for key in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES",
                    "WATCHDOG_USEC", "WATCHDOG_PID"):
            env.pop(key, None)
        env.update(spec["env"])
        if spec["notify"] or spec.get("watchdog_sec"):  # as systemd: only for those who use it
            env["NOTIFY_SOCKET"] = self.notify_addr
        if spec.get("watchdog_sec"):
            env["WATCHDOG_USEC"] = str(int(spec["watchdog_sec"] * 1_000_000))
        creds = None
        if spec.get("user"):
            try:
                creds, home = credentials_for(spec["user"])
            except KeyError:  # removed since the config was validated
                reason = f"user {spec['user']!r} does not exist on this host"
                self.supervisor_log(reason)
                self.fail(reason)
                return
            env.setdefault("HOME", home)
            env["USER"] = env["LOGNAME"] = spec["user"]
        listen_fds: tuple[int, ...] = ()
        if spec.get("listen"):
            if self.listen_fd is None:  # once: every respawn serves the same socket
                try:
                    self.listen_fd = fetch_socket(spec["listen"]["socket"])
                except SocketUnavailable as exc:
                    self.supervisor_log(str(exc))
                    self.fail(str(exc))
                    return
            listen_fds = (self.listen_fd,)
            env.update(activation_env())
        rfd, wfd = os.pipe2(os.O_CLOEXEC)
        with contextlib.suppress(OSError):  # a bigger pipe: fewer wake-ups for both sides
            fcntl.fcntl(rfd, F_SETPIPE_SZ, PIPE_SIZE)
        try:
            pid = spawn(spec["argv"], env=env, stdout=wfd, stderr=wfd,
                        cwd=spec.get("working_dir"), creds=creds, new_group=True,
                        pdeathsig=signal.SIGKILL, listen_fds=listen_fds)
        except OSError as exc:
            os.close(rfd)
            os.close(wfd)
            reason = f"cannot execute {spec['argv'][0]!r}: {exc.strerror or exc}"
            self.supervisor_log(reason)
            self.fail(reason)
            return
        os.close(wfd)
        self.child_pid = pid
        self.pgid = pid
        self.pipe_fd = rfd
        os.set_blocking(rfd, False)
        self.sel.register(rfd, selectors.EVENT_READ, "pipe")
        now = time.time()
        self.run_started = time.monotonic()
        self.health_failures = 0
        if spec.get("pid_file"):
            pid_file = Path(spec["pid_file"])
            try:
                private_dir(pid_file.parent, 0o755)
                atomic_write_bytes(pid_file, f"{pid}\n".encode(), 0o644)  # readable, as usual
            except OSError as exc:  # compatibility only: never worth the service
                self.supervisor_log(f"cannot write pid_file {pid_file}: {exc.strerror or exc}")
        self.timers.pop("restart", None)
        self.timers["ready_deadline"] = time.monotonic() + spec["start_timeout"]
        if not spec["notify"]:
            if spec["health"]["type"] == "none":
                self.timers["start_seconds"] = time.monotonic() + spec["start_seconds"]
            else:
                self.timers["ready_probe"] = time.monotonic() + 0.05
        if spec.get("watchdog_sec"):
            self.timers["watchdog"] = time.monotonic() + spec["watchdog_sec"]
        self.write_status(state="starting", ready=False, pid=pid,
                          pid_ticks=start_ticks(pid), pgid=pid, started_at=now,
                          ready_at=None, status_text=None, reason=None, health="unknown")
        self.event("started")
        self.start_keeper()  # after the status: a respawn is visible without waiting for it

    # --- the loop -------------------------------------------------------

    def on_timer(self, name: str) -> None:
        if name == "restart":
            self.do_restart()
        elif name == "ready_probe":
            self.start_probe("ready")
        elif name == "health":
            if self.spec["health"]["type"] != "none":
                self.start_probe("health")
        elif name == "probe_timeout" and self.probe is not None:
            self.probe_done(*self.probe.expire())
        elif name == "start_seconds":
            self.mark_ready(f"up for {self.spec['start_seconds']:g}s")
        elif name == "ready_deadline":
            self.supervisor_log(f"not ready within {self.spec['start_timeout']:g}s")
            self.kill_for_restart(f"not ready within {self.spec['start_timeout']:g}s")
        elif name == "watchdog":
            self.supervisor_log(f"watchdog timeout ({self.spec['watchdog_sec']:g}s)")
            self.kill_for_restart(f"watchdog timeout ({self.spec['watchdog_sec']:g}s)")
        elif name == "stop_kill":
            if self.pgid is not None:
                kill_group(self.pgid, signal.SIGKILL)
            self.kill_orphans()
            if self.child_pid is None:
                self.finish_stop()
        elif name == "beat":
            if self.status["ready"] and self.status["state"] == "running":
                self.beat("passing")
        elif name == "pipe":
            self.resume_pipe()
        elif name == "compress":
            self.log.compress_pending()
        elif name in ("status_retry", "drops"):
            self.write_status()
        elif name == "stop_poll":
            self.reap()
            if self.child_pid is None:
                self.finish_stop()

    def handle_signals(self) -> None:
        try:
            while os.read(self.wake_fd, 512):
                pass
        except BlockingIOError:
            pass
        while self.signals:
            sig = self.signals.popleft()
            if sig == signal.SIGCHLD:
                self.reap()
            elif sig in (signal.SIGTERM, signal.SIGINT):
                self.request_stop("graceful")
            elif sig == signal.SIGQUIT:
                self.request_stop("force")
            elif sig == signal.SIGUSR2:
                self.request_stop("giveup")
            elif sig == signal.SIGHUP and self.child_pid is not None and not self.stop_mode:
                self.stop_mode = "restart"
                self.write_status(state="stopping", ready=False)
                kill_group(self.pgid, getattr(signal, "SIG" + self.spec["stop_signal"]))
                self.timers["stop_kill"] = time.monotonic() + self.spec["stop_timeout"]
            elif sig == signal.SIGUSR1:
                self.log.rotate()
                self.schedule_compress()

    def run(self) -> int:
        self.setup()
        self.spawn()
        while not self.exiting:
            now = time.monotonic()
            due = [n for n, t in self.timers.items() if t <= now]
            for name in due:
                if self.timers.get(name, now + 1) <= now:
                    del self.timers[name]
                    self.on_timer(name)
                if self.exiting:
                    break
            if self.exiting:
                break
            timeout = None
            if self.timers:
                timeout = max(0.0, min(self.timers.values()) - time.monotonic())
            for key, _mask in self.sel.select(timeout):
                if key.data == "wake":
                    self.handle_signals()
                elif key.data == "pipe" and self.pipe_fd is not None:
                    self.handle_pipe()
                elif key.data == "notify":
                    self.handle_notify()
                elif key.data == "probe" and self.probe is not None:
                    self.probe_step()
                if self.exiting:
                    break
            self.reap()
        self.close_pipe()
        self.log.close()
        self.stop_keeper(wait=True)
        self.reap()
        pid_file = self.spec.get("pid_file")
        if pid_file:
            try:
                os.unlink(pid_file)
            except FileNotFoundError:
                pass
        return 0






def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tts_ops_manual.supervise STATE_DIR", file=sys.stderr)
        return 2
    return Supervisor(Path(argv[0])).run()


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # everything is on disk (raw, fsynced writes): skip the interpreter's teardown, ~20 ms
    # that every stop would otherwise wait for
    os._exit(code)
