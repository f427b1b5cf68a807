"""The supervisor's keeper and heartbeats (a part of `tts_ops_manual.supervise.Supervisor`).

The keeper is a forked process that ends the service's whole tree if the supervisor dies
(even by SIGKILL); heartbeat writers are short forks, niced, that renew the service's
discovery record so the supervisor's loop never waits on the registry.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

from tts_ops import cgroups
from tts_ops.procinfo import kill_group
from tts_ops.spawn import PR_SET_PDEATHSIG
from tts_ops.spawn import libc as _libc

PR_SET_NAME = 15
KEEPER_NAME = b"tts-ops-keeper"
BEAT_NICE = 10


class Keeper:
    """The keeper and the heartbeat writers; shares the supervisor's state."""

    def start_keeper(self) -> None:
        """Fork a keeper that ends the service's whole tree if this supervisor dies.

        PR_SET_PDEATHSIG reaches only our direct child (the service's main process); the
        keeper, told of our death by its own parent-death signal, kills the service's
        cgroup (everything it ever forked) or, without one, its process group. It lives in
        a process group of its own, so a kill of ours does not take it along.
        """
        pgid, cgroup, supervisor = self.pgid, self.cgroup, os.getpid()
        pid = os.fork()
        if pid == 0:
            try:
                signal.set_wakeup_fd(-1)
                os.setpgid(0, 0)
                for sig in (signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
                            signal.SIGCHLD, signal.SIGINT):
                    signal.signal(sig, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
                os.closerange(3, 65536)
                _libc.prctl(PR_SET_NAME, KEEPER_NAME, 0, 0, 0)  # what ps shows
                _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
                while os.getppid() == supervisor:  # a stray SIGTERM is not our death
                    signal.sigwait({signal.SIGTERM})
                if cgroup is not None:
                    cgroups.kill(cgroup)
                if pgid is not None:
                    kill_group(pgid, signal.SIGKILL)
            finally:
                os._exit(0)
        self.keeper = pid
        self.helpers.add(pid)

    def stop_keeper(self, wait: bool = False) -> None:
        if self.keeper is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.keeper, signal.SIGKILL)
            if wait:  # on our way out: no zombie of ours left in the cgroup
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(self.keeper, 0)
                self.helpers.discard(self.keeper)
            self.keeper = None

    # --- discovery heartbeats ---------------------------------------------

    def beat(self, health: str) -> None:
        """Send a heartbeat in a forked child: a registry client (sqlite3, requests) would
        add megabytes to this process."""
        registry = self.spec.get("registry")
        if not registry:
            return
        if health == "passing":
            self.timers["beat"] = time.monotonic() + registry["interval"]
        else:
            self.timers.pop("beat", None)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                signal.set_wakeup_fd(-1)
                # its imports cost ~90 ms of CPU: behind the service and this supervisor's
                # capture of its output (a heartbeat has a ttl of seconds to land in)
                os.nice(BEAT_NICE)
                from tts_ops.plugin import discovery_heartbeat

                discovery_heartbeat(registry["name"], registry["location"],
                                    registry["record"], health, registry.get("weights"))
            except BaseException:
                code = 1
            os._exit(code)
        self.helpers.add(pid)
        self.beaters.add(pid)

    def end_beats(self) -> None:
        """Before the status says stopped: a heartbeat still in flight carries the record
        and would register it again after the CLI took it out of discovery."""
        for pid in list(self.beaters):
            if pid in self.helpers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
                self.helpers.discard(pid)
        self.beaters.clear()
