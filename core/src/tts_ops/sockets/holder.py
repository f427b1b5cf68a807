"""The socket holder process: binds one service's address and passes it to whoever may ask.

``python -m tts_ops.sockets.holder NAME HOST PORT DIR [UIDS]``. It prints ``ready`` (or
``error: ...``) on stdout once, then serves ``DIR/NAME.sock``: every connection from the
same user, root or one of ``UIDS`` (comma-separated; a service's ``user``) gets the
listening socket by ``SCM_RIGHTS`` and is closed. It never accepts a TCP connection
itself: connections wait in the kernel queue for a generation of the service. SIGTERM
ends it; SIGINT and SIGHUP (an operator's terminal closing) do not. Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import sys
from pathlib import Path

BACKLOG = 1024
CHECK_S = 5.0  # how often the holder makes sure its unix socket is still there


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1" if host == "localhost" else host, port))
    sock.listen(BACKLOG)
    return sock


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


class _Handout:
    """The unix socket at ``<where>/<name>.sock`` that hands the listener out: (re)made
    when it is gone (a tmp cleaner may delete it, and every later restart or deploy needs
    it to fetch the socket; the address itself stays open meanwhile)."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory, self.name = directory, name
        self.path = directory / f"{name}.sock"
        self.unix: socket.socket | None = None
        self.inode: int | None = None

    def publish(self) -> None:
        tmp = self.directory / f".{self.name}.{os.getpid()}.sock"
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            unix.bind(str(tmp))
        finally:
            os.umask(old_umask)
        unix.listen(64)
        unix.settimeout(CHECK_S)
        os.replace(tmp, self.path)
        previous = self.unix
        self.unix, self.inode = unix, os.stat(self.path).st_ino
        if previous is not None:
            previous.close()

    def missing(self) -> bool:
        try:
            return os.stat(self.path).st_ino != self.inode
        except OSError:
            return True


def main(argv: list[str]) -> int:
    name, host, port, where = argv[:4]
    allowed = {os.getuid(), 0, *(int(u) for u in (argv[4] if len(argv) > 4 else "").split(",")
                                 if u)}
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        listener = _bind(host, int(port))
    except OSError as exc:
        print(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", flush=True)
        return 1
    handout = _Handout(Path(where), name)
    handout.publish()
    from tts_ops.procinfo import start_ticks
    from tts_ops.statefile import atomic_write_json

    atomic_write_json(handout.directory / f"{name}.json", {
        "pid": os.getpid(), "ticks": start_ticks(os.getpid()), "address": f"{host}:{port}",
        "socket": str(handout.path)})

    def finish(_signum: int, _frame: object) -> None:
        if not handout.missing():  # a newer holder's socket is not ours to remove
            with contextlib.suppress(OSError):
                os.unlink(handout.path)
        os._exit(0)

    def republish(_signum: int, _frame: object) -> None:
        if handout.missing():
            with contextlib.suppress(OSError):
                handout.publish()

    signal.signal(signal.SIGTERM, finish)
    signal.signal(signal.SIGUSR1, republish)  # a command found the path gone: at once
    print("ready", flush=True)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    while True:
        try:
            conn, _addr = handout.unix.accept()  # type: ignore[union-attr]
        except TimeoutError:
            republish(0, None)
            continue
        except OSError:
            continue  # interrupted, or the socket was replaced under it by republish
        with conn:
            conn.settimeout(None)
            try:
                if _peer_uid(conn) in allowed:
                    socket.send_fds(conn, [b"http"], [listener.fileno()])
            except OSError:
                pass  # the asker went away: its problem, not ours


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
