"""The listening sockets: inherited (``LISTEN_FDS``/``LISTEN_PID``) and/or bound to host and port.

A process manager that owns the service's address passes it by socket activation; the
server then serves it, and binds ``--host/--port`` only when that is another address (a
private one, for health checks of one generation among several sharing the socket).
"""

from __future__ import annotations

import os
import socket

SD_LISTEN_FDS_START = 3
LISTEN_BACKLOG = 1024


def inherited_sockets() -> list[socket.socket]:
    """The listening sockets passed by socket activation (maybe none). Clears the variables."""
    fds = os.environ.pop("LISTEN_FDS", None)
    pid = os.environ.pop("LISTEN_PID", None)
    os.environ.pop("LISTEN_FDNAMES", None)
    if not fds or not fds.isdigit() or (pid and pid != str(os.getpid())):
        return []
    out = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(fds)):
        sock = socket.socket(fileno=fd)
        sock.set_inheritable(False)
        out.append(sock)
    return out


def same_port(sock: socket.socket, port: int) -> bool:
    addr = sock.getsockname()
    return isinstance(addr, tuple) and addr[1] == port


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


def listening_sockets(host: str, port: int) -> tuple[list[socket.socket], bool]:
    """Every socket to serve, and whether one of them is shared with other processes."""
    inherited = inherited_sockets()
    socks = list(inherited)
    if not any(same_port(s, port) for s in inherited):
        try:
            socks.append(bind_socket(host, port))
        except OSError:
            for s in inherited:
                s.close()
            raise
    return socks, bool(inherited)
