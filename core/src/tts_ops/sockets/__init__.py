"""The service's address, owned by tts-ops: one listening socket shared by every generation.

A service with ``socket: inherit`` never binds its configured ``host:port`` itself. The
process-manager layer binds it once and hands the same socket to each generation by
socket activation (``LISTEN_FDS=1``, ``LISTEN_PID``, ``LISTEN_FDNAMES=http``): during a
restart or a deploy the old and the new generation accept from one kernel queue, so a
client pinned to the address is never refused or reset.

The systemd backend uses a real ``.socket`` unit. The manual and supervisor backends use a
*socket holder* (`tts_ops.sockets.holder`): a small process per service that binds the
address, outlives every generation, and passes the socket over a private unix socket
(``<state>/sockets/NAME.sock``, 0600 in a 0700 directory, peer credentials checked).
This module starts, finds and stops holders, and fetches the socket from one.
Standard library only (the manual supervisor imports it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from tts_ops.procinfo import is_alive
from tts_ops.statefile import locked, private_dir, read_json

FD_NAME = "http"
STOP_WAIT_S = 5.0


class SocketUnavailable(OSError):
    """The service's address cannot be bound or fetched; ``str()`` is one line for the operator."""


def directory(state_dir: Path) -> Path:
    return Path(state_dir) / "sockets"


def socket_path(state_dir: Path, name: str) -> Path:
    return directory(state_dir) / f"{name}.sock"


def _info_path(state_dir: Path, name: str) -> Path:
    return directory(state_dir) / f"{name}.json"


def holder_info(state_dir: Path, name: str) -> dict[str, Any] | None:
    """The running holder of ``name`` ({pid, ticks, address}), or None."""
    try:
        info = read_json(_info_path(state_dir, name))
    except ValueError:
        return None
    if isinstance(info, dict) and is_alive(info.get("pid"), info.get("ticks")):
        return info
    return None


def holders(state_dir: Path) -> list[str]:
    """Names of services whose holder state exists (running or left by a dead holder)."""
    try:
        entries = os.listdir(directory(state_dir))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(e[:-5] for e in entries if e.endswith(".json") and not e.startswith("."))


def ensure_holder(state_dir: Path, name: str, host: str, port: int,
                  allow_uids: tuple[int, ...] = ()) -> Path:
    """Start ``name``'s holder on ``host:port`` unless it runs; return its unix socket path.

    Raises `SocketUnavailable` with one line (the address is in use by something else,
    not permitted, ...).
    """
    import subprocess  # here: the manual supervisor imports this module for `fetch` only

    where = private_dir(directory(state_dir))
    address = f"{host}:{port}"
    with locked(where / f".{name}.lock"):
        info = holder_info(state_dir, name)
        if info is not None and info.get("address") == address:
            path = socket_path(state_dir, name)
            if not path.is_socket():  # deleted (a tmp cleaner): the holder makes it again
                with contextlib.suppress(ProcessLookupError):
                    os.kill(info["pid"], signal.SIGUSR1)
                deadline = time.monotonic() + STOP_WAIT_S
                while not path.is_socket() and time.monotonic() < deadline:
                    time.sleep(0.01)
            return path
        if info is not None:  # the configured address changed: the old one is let go
            _stop(info)
        argv = [sys.executable, "-m", "tts_ops.sockets.holder", name, host, str(port),
                str(where), ",".join(str(u) for u in allow_uids)]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, start_new_session=True,
                                close_fds=True, env={**os.environ, "PYTHONSAFEPATH": "1"})
        assert proc.stdout is not None
        line = proc.stdout.readline().decode(errors="replace").strip()
        proc.stdout.close()
        if line != "ready":
            proc.wait()
            reason = line.removeprefix("error: ")
            if "Address already in use" in reason:
                from tts_ops.procinfo import port_holder

                reason += f" (held{port_holder(port)})" if port_holder(port) else ""
            raise SocketUnavailable(reason or f"the socket holder for {address} exited at start")
        return socket_path(state_dir, name)


def hold_for(state_dir: Path, service: Any) -> Path | None:
    """Make sure ``service``'s shared address is held (`ensure_holder`); its holder's path,
    or None for a service that binds its own address (``socket: none``)."""
    address = service.shared_address()
    if address is None:
        return None
    uids: tuple[int, ...] = ()
    if service.user:
        import pwd

        with contextlib.suppress(KeyError):
            uids = (pwd.getpwnam(service.user).pw_uid,)
    return ensure_holder(state_dir, service.owner, address[0], address[1], uids)


def fetch(path: Path | str, timeout: float = 5.0) -> int:
    """The listening socket's descriptor, from the holder at ``path`` (inheritable=False)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(timeout)
    try:
        conn.connect(str(path))
        _msg, fds, _flags, _addr = socket.recv_fds(conn, 64, 1)
    except OSError as exc:
        raise SocketUnavailable(f"cannot get the listening socket from {path}:"
                                f" {exc.strerror or exc}") from None
    finally:
        conn.close()
    if not fds:
        raise SocketUnavailable(f"the socket holder at {path} refused to pass the socket")
    return fds[0]


def in_use(state_dir: Path, name: str) -> bool:
    """Whether a process other than ``name``'s holder has its listening socket (a
    generation inherited it): the address serves someone's service. Processes whose
    descriptors cannot be read are another user's, which this user cannot have started."""
    info = holder_info(state_dir, name)
    if info is None:
        return False
    pid = info["pid"]
    try:
        ours = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    except OSError:
        return True
    sockets_held = {link for link in ours if link.startswith("socket:")}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == pid:
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue  # it exited meanwhile, or it is another user's
        for fd in fds:
            try:
                if os.readlink(f"/proc/{entry}/fd/{fd}") in sockets_held:
                    return True
            except OSError:
                continue
    return False


def release(state_dir: Path, name: str) -> bool:
    """Stop ``name``'s holder (the address closes); True if one was running."""
    where = directory(state_dir)
    if not where.is_dir():
        return False
    with locked(where / f".{name}.lock"):
        info = holder_info(state_dir, name)
        if info is not None:
            _stop(info)
        for path in (_info_path(state_dir, name), socket_path(state_dir, name)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        return info is not None


def _stop(info: dict[str, Any]) -> None:
    pid, ticks = info["pid"], info.get("ticks")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT_S
    while is_alive(pid, ticks):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def activation_env(count: int = 1) -> dict[str, str]:
    """The socket-activation variables (``LISTEN_PID`` is the child's, set after fork)."""
    return {"LISTEN_FDS": str(count), "LISTEN_FDNAMES": ":".join([FD_NAME] * count)}
