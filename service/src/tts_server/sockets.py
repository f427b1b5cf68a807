"""The listening socket: inherited (``LISTEN_FDS``/``LISTEN_PID``) or bound to host and port."""

from __future__ import annotations

import os
import socket

SD_LISTEN_FDS_START = 3
LISTEN_BACKLOG = 1024


def inherited_socket() -> socket.socket | None:
    """The first socket passed by socket activation, or None. Clears the variables."""
    fds = os.environ.pop("LISTEN_FDS", None)
    pid = os.environ.pop("LISTEN_PID", None)
    os.environ.pop("LISTEN_FDNAMES", None)
    if not fds or (pid and pid != str(os.getpid())):
        return None
    if int(fds) < 1:
        return None
    sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    sock.set_inheritable(False)
    return sock


def bind_socket(host: str, port: int, backlog: int = LISTEN_BACKLOG) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if host == "localhost":
        host = "127.0.0.1"
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(backlog)
    return sock
