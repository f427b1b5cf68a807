"""fork + exec for supervisors: a new process group, dropped privileges, parent-death signal.

The manual backend's supervisor is single-threaded, so a plain ``os.fork`` is safe, and
it keeps the supervisor small (``subprocess`` alone is ~1 MB of RSS). An exec failure
is reported to the parent through a close-on-exec pipe and raised there as OSError.
Standard library only.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
from dataclasses import dataclass

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
libc = _libc  # public: prctl and friends for supervisors


@dataclass
class Credentials:
    uid: int
    gid: int
    groups: list[int]


def credentials_for(user: str) -> tuple[Credentials, str]:
    """Credentials of ``user`` and its home directory (initgroups semantics)."""
    import pwd

    pw = pwd.getpwnam(user)
    return Credentials(pw.pw_uid, pw.pw_gid, os.getgrouplist(pw.pw_name, pw.pw_gid)), pw.pw_dir


def spawn(
    argv: list[str],
    *,
    env: dict[str, str],
    stdout: int | None = None,
    stderr: int | None = None,
    cwd: str | None = None,
    creds: Credentials | None = None,
    new_group: bool = False,
    pdeathsig: int | None = None,
    idle: bool = False,
    listen_fds: tuple[int, ...] = (),
) -> int:
    """Start ``argv`` (looked up in ``env['PATH']``); return its pid or raise OSError.

    ``listen_fds`` are passed by socket activation: as descriptors 3, 4, ... with
    ``LISTEN_FDS`` and ``LISTEN_PID`` (the child's own pid) in its environment.
    """
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: no Python-level allocation worth worrying about, just syscalls
        try:
            os.close(err_r)
            if new_group:
                os.setpgid(0, 0)
            if idle:  # background work: only CPU time nothing else wants, from its first instant
                try:
                    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
                except OSError:
                    os.nice(19)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
                        signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD, signal.SIGPIPE):
                signal.signal(sig, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            if stdout is not None:
                os.dup2(stdout, 1)
            if stderr is not None:
                os.dup2(stderr, 2)
            if listen_fds:
                # above the target range first: a source may sit where another must go
                high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 64) for fd in listen_fds]
                err_w = fcntl.fcntl(err_w, fcntl.F_DUPFD_CLOEXEC, 64 + len(high))
                for i, fd in enumerate(high):
                    os.dup2(fd, 3 + i)  # inheritable
                env = {**env, "LISTEN_FDS": str(len(high)), "LISTEN_PID": str(os.getpid())}
            first = 3 + len(listen_fds)
            os.closerange(first, err_w)
            os.closerange(err_w + 1, 65536)
            if cwd:
                os.chdir(cwd)
            if creds is not None:
                os.setgroups(creds.groups)
                os.setresgid(creds.gid, creds.gid, creds.gid)
                os.setresuid(creds.uid, creds.uid, creds.uid)
            if pdeathsig is not None:
                # after setuid: changing credentials clears the parent-death signal
                _libc.prctl(PR_SET_PDEATHSIG, pdeathsig, 0, 0, 0)
                if os.getppid() != parent:  # the parent died before prctl took effect
                    os._exit(1)
            os.execvpe(argv[0], argv, env)
        except OSError as exc:
            os.write(err_w, f"{exc.errno}:{exc.strerror or exc}".encode())
        except BaseException as exc:
            os.write(err_w, f"0:{exc}".encode())
        finally:
            os._exit(127)
    os.close(err_w)
    with os.fdopen(err_r, "rb") as fh:
        report = fh.read()
    if report:
        os.waitpid(pid, 0)
        code, _, message = report.decode(errors="replace").partition(":")
        raise OSError(int(code) or 0, message)
    return pid
