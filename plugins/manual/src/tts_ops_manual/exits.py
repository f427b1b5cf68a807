"""Exits, restarts and stopping of the supervised service (a part of
`tts_ops_manual.supervise.Supervisor`): reaping, the restart policy with its backoff,
killing what the service left behind, and the graceful or forced stop.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

from tts_ops import cgroups
from tts_ops.procinfo import children, kill_group


class Exits:
    """The service's end and its next start; shares the supervisor's state."""

    def reap(self) -> None:
        while True:
            try:
                pid, wstatus = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.helpers.discard(pid)
            self.beaters.discard(pid)
            if pid == self.child_pid:
                self.on_exit(wstatus)

    def on_exit(self, wstatus: int) -> None:
        self.stop_keeper()
        code = os.waitstatus_to_exitcode(wstatus)
        exit_code, exit_signal = (code, None) if code >= 0 else (None, -code)
        uptime = time.monotonic() - self.run_started
        self.child_pid = None
        if self.probe is not None:
            self.probe_done(False, "process exited")
        for name in ("ready_deadline", "ready_probe", "start_seconds", "health", "watchdog",
                     "beat"):
            self.timers.pop(name, None)
        self.close_pipe()
        self.status.update(exit_code=exit_code, exit_signal=exit_signal, pid=None,
                           pid_ticks=None, ready=False)
        how = f"exited {exit_code}" if exit_signal is None else f"killed by signal {exit_signal}"
        if self.stop_mode in ("graceful", "force", "giveup"):
            self.finish_stop()
            return
        if self.stop_mode == "restart":
            self.stop_mode = None
            self.clear_group()
            self.supervisor_log("restarting on request")
            self.status["restarts"] += 1
            self.spawn()
            self.event("restarted", reason="requested")
            return
        reason = self.pending_reason or how
        self.pending_reason = None
        self.supervisor_log(f"service {how} after {uptime:.1f}s")
        try:
            self._after_exit(exit_code, exit_signal, reason, uptime, how)
        finally:
            # after the respawn: the heartbeat writer is a fork, not worth delaying it for
            if not self.status["ready"]:
                self.beat("critical")

    def _after_exit(self, exit_code: int | None, exit_signal: int | None, reason: str,
                    uptime: float, how: str) -> None:
        if exit_code == 0 and not reason.startswith(("unhealthy", "watchdog", "not ready")):
            self.clear_group()
            self.write_status(state="stopped", reason="exited 0 on its own")
            self.event("exited", exit_code=0)
            self.exiting = True
            return
        if exit_code is not None and exit_code in self.spec["permanent_exit_codes"]:
            self.fail(f"{how} (a permanent exit code: not restarted)")
            return
        now = time.monotonic()
        if uptime > self.spec["restart_window"]:
            self.failures = []
        self.failures = [t for t in self.failures if now - t <= self.spec["restart_window"]]
        self.failures.append(now)
        if len(self.failures) > self.spec["max_restarts"]:
            self.fail(f"{reason}; gave up after {self.spec['max_restarts']} restarts within"
                      f" {self.spec['restart_window']:g}s")
            return
        delay = backoff_delay(self.spec["restart_delay"], self.spec["restart_backoff"],
                              len(self.failures), self.spec["restart_delay_max"])
        if delay > 0:
            delay *= _uniform(0.9, 1.1)  # jitter: services do not restart in lockstep
        self.clear_group()
        self.event("exited", exit_code=exit_code, exit_signal=exit_signal, reason=reason)
        self.status["reason"] = reason
        if delay <= 0:
            self.do_restart()  # no backoff: respawn now, one status write
            return
        # the next try on CLOCK_MONOTONIC (the same clock in every process of this boot,
        # unmoved by a clock step): a start waiting for readiness gives up at once when
        # that is past its deadline
        due = time.monotonic() + delay
        self.write_status(state="backoff", restart_due=due)
        self.timers["restart"] = due

    pending_reason: str | None = None

    def kill_for_restart(self, reason: str) -> None:
        self.pending_reason = reason
        if self.pgid is not None:
            kill_group(self.pgid, signal.SIGKILL)

    def do_restart(self) -> None:
        self.status["restarts"] += 1
        self.spawn()
        if self.child_pid is not None:
            self.event("restarted", reason=self.status.get("reason"))

    def fail(self, reason: str) -> None:
        self.timers.clear()
        self.clear_group()
        self.write_status(state="failed", ready=False, pid=None, pid_ticks=None, reason=reason)
        self.event("failed", reason=reason)
        self.exiting = True

    def group_alive(self) -> bool:
        """Whether any process of the service's group is left (after reaping our zombies)."""
        self.reap()
        if self.pgid is None:
            return False
        try:
            os.killpg(self.pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def clear_group(self) -> None:
        """Kill whatever is left of the group, of the cgroup and of our descendants."""
        deadline = time.monotonic() + 5
        while self.group_alive() and time.monotonic() < deadline:
            kill_group(self.pgid, signal.SIGKILL)
            time.sleep(0.002)
        if self.cgroup is not None:  # what left the process group (setsid) too; not us
            spare = {os.getpid(), *self.helpers, *self.log.spawned}
            for pid in cgroups.members(self.cgroup):
                if pid not in spare:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        self.kill_orphans()
        self.reap()

    def kill_orphans(self) -> None:
        """Processes re-parented to us (we are a subreaper) that left the group."""
        helpers = set(self.log.spawned) | self.helpers
        for pid in children(os.getpid()):
            if pid not in helpers:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def request_stop(self, mode: str) -> None:
        if self.stop_mode in ("force", "giveup") or self.stop_mode == mode == "graceful":
            return
        self.stop_mode = mode
        self.timers.pop("restart", None)
        self.timers.pop("beat", None)
        if self.child_pid is None:
            self.finish_stop()
            return
        self.write_status(state="stopping", ready=False)
        self.event("stopping")
        if mode in ("force", "giveup"):
            kill_group(self.pgid, signal.SIGKILL)
        else:
            sig = getattr(signal, "SIG" + self.spec["stop_signal"])
            kill_group(self.pgid, sig)
            self.timers["stop_kill"] = time.monotonic() + self.spec["stop_timeout"]

    def finish_stop(self) -> None:
        """The main process is gone: wait for the rest of the group, then exit."""
        if self.group_alive():
            if "stop_kill" not in self.timers:
                self.timers["stop_kill"] = time.monotonic()
            self.timers["stop_poll"] = time.monotonic() + 0.01
            return
        self.timers.pop("stop_kill", None)
        self.timers.pop("stop_poll", None)
        self.clear_group()
        self.end_beats()
        if self.stop_mode == "giveup":
            reason = f"not ready within {self.spec['start_timeout']:g}s"
            if self.status.get("state") == "backoff" and self.status.get("reason"):
                # it never stayed up: say how it ended, not only that the wait did
                restarts = self.status["restarts"]
                reason = (f"{self.status['reason']} before becoming ready (after {restarts}"
                          f" restart{'s' * (restarts != 1)}; the next one was due after the"
                          f" start_timeout of {self.spec['start_timeout']:g}s)")
            self.write_status(state="failed", pid=None, pid_ticks=None, ready=False,
                              reason=reason)
            self.event("failed", reason="start timeout")
        else:
            self.write_status(state="stopped", pid=None, pid_ticks=None, ready=False, reason=None)
            self.event("stopped")
        self.exiting = True


def backoff_delay(first: float, factor: float, failures: int, cap: float) -> float:
    """``first * factor ** (failures - 1)``, capped, without overflowing for any count."""
    if first <= 0:
        return 0.0
    delay = first
    for _ in range(failures - 1):  # stops as soon as the cap is reached: a few steps
        if delay >= cap or factor <= 1:
            break
        delay *= factor
    return min(delay, cap)


def _uniform(low: float, high: float) -> float:
    """A random number in [low, high] without importing random (keeps the RSS down)."""
    return low + (high - low) * int.from_bytes(os.urandom(4), "big") / 0xFFFFFFFF
