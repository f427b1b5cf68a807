"""Readiness and health of the supervised service (a part of
`tts_ops_manual.supervise.Supervisor`): ``READY=1`` and ``STATUS=`` over the notify socket
(from the service's own processes only, by their credentials), and the health probe.
"""

from __future__ import annotations

import os
import selectors
import socket
import struct
import time

from tts_ops_manual.probe import Probe

SCM_CREDENTIALS = getattr(socket, "SCM_CREDENTIALS", 2)
CRED_SPACE = socket.CMSG_SPACE(struct.calcsize("iII"))  # struct ucred: pid, uid, gid


class Readiness:
    """Readiness (notify or probe) and the periodic health probe; shares the supervisor's
    state."""

    def mark_ready(self, how: str) -> None:
        if self.status["ready"] or self.stop_mode:
            return
        for name in ("ready_deadline", "ready_probe", "start_seconds"):
            self.timers.pop(name, None)
        self.timers["health"] = time.monotonic() + self.spec["health_interval"]
        # the event first: whoever sees the status ready finds the event already recorded
        self.event("ready", how=how)
        self.write_status(state="running", ready=True, ready_at=time.time(), health="passing")
        self.beat("passing")

    def start_probe(self, purpose: str) -> None:
        if self.probe is not None or self.child_pid is None:
            return
        h = self.spec["health"]
        self.probe = Probe(h["type"], h["host"], h["port"], h["path"], h["timeout"], h.get("url"))
        self.probe_purpose = purpose
        if self.probe.result is not None:
            self.probe_done(*self.probe.result)
            return
        self.probe_fd = self.probe.fileno()
        events = selectors.EVENT_WRITE if self.probe.wants_write else selectors.EVENT_READ
        self.sel.register(self.probe_fd, events, "probe")
        self.timers["probe_timeout"] = self.probe.deadline

    def probe_step(self) -> None:
        assert self.probe is not None
        was_connect = self.probe.wants_write
        result = self.probe.step()
        if result is not None:
            self.probe_done(*result)
        elif was_connect and not self.probe.wants_write:
            self.sel.modify(self.probe_fd, selectors.EVENT_READ, "probe")

    def probe_done(self, ok: bool, detail: str) -> None:
        if self.probe_fd is not None:
            self.sel.unregister(self.probe_fd)
            self.probe_fd = None
        if self.probe is not None:
            self.probe.close()
        self.probe = None
        self.timers.pop("probe_timeout", None)
        if self.child_pid is None or self.stop_mode:
            return
        if self.probe_purpose == "ready":
            if ok:
                self.status["health_detail"] = detail
                self.mark_ready("health check")
            else:
                self.timers["ready_probe"] = time.monotonic() + 0.1
            return
        self.timers["health"] = time.monotonic() + self.spec["health_interval"]
        if ok:
            self.health_failures = 0
            if self.status["state"] == "unhealthy" or self.status["health"] != "passing":
                self.write_status(state="running", health="passing", health_detail=detail)
                self.event("healthy", detail=detail)
                self.beat("passing")
            return
        self.health_failures += 1
        self.status["health_detail"] = detail
        if self.health_failures >= self.spec["unhealthy_threshold"]:
            if self.status["state"] != "unhealthy":
                self.write_status(state="unhealthy", health="critical")
                self.event("unhealthy", detail=detail)
                self.beat("critical")
            if self.spec["restart_on_unhealthy"]:
                self.supervisor_log(f"restarting: {self.health_failures} failed health checks"
                                    f" ({detail})")
                self.kill_for_restart(f"unhealthy: {detail}")

    def from_service(self, ancdata: list[tuple[int, int, bytes]]) -> bool:
        """Whether a datagram's sender (SCM_CREDENTIALS) is in the service's process group."""
        if self.pgid is None:
            return False
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == SCM_CREDENTIALS and len(data) >= 12:
                pid = struct.unpack("iII", data[:12])[0]
                try:
                    return os.getpgid(pid) == self.pgid
                except OSError:  # the sender is gone: we cannot tell, so no
                    return False
        return False

    def handle_notify(self) -> None:
        while True:
            try:
                data, ancdata, _flags, _addr = self.notify.recvmsg(4096, CRED_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            if not self.from_service(ancdata):
                self.ignored_notify += 1
                continue
            fields = dict(line.partition("=")[::2]
                          for line in data.decode("utf-8", "replace").splitlines())
            # one datagram often says READY=1 and STATUS= together: apply STATUS first
            if "STATUS" in fields:
                self.status["status_text"] = fields["STATUS"][:200]
                if not (fields.get("READY") == "1" and self.spec["notify"]):
                    self.write_status()
            if fields.get("WATCHDOG") == "1" and self.spec.get("watchdog_sec"):
                self.timers["watchdog"] = time.monotonic() + self.spec["watchdog_sec"]
            if "EXTEND_TIMEOUT_USEC" in fields and "ready_deadline" in self.timers:
                try:
                    extra = int(fields["EXTEND_TIMEOUT_USEC"]) / 1_000_000
                except ValueError:
                    extra = 0
                self.timers["ready_deadline"] = max(self.timers["ready_deadline"],
                                                    time.monotonic() + extra)
            if fields.get("READY") == "1" and self.spec["notify"]:
                self.mark_ready("READY=1")
