"""Non-blocking health probes (http, tcp) that run inside the supervisor's select loop.

The supervisor is single-threaded on purpose (it forks with ``preexec_fn``), so a
probe never blocks: it is a small state machine driven by socket readiness.
"""

from __future__ import annotations

import errno
import os
import socket
import time
import urllib.parse


class Probe:
    """One check. Call `step` when its socket is ready; it returns (ok, detail) when done."""

    def __init__(self, kind: str, host: str, port: int, path: str, timeout: float,
                 url: str | None = None) -> None:
        if url:
            parts = urllib.parse.urlsplit(url)
            host = parts.hostname or host
            port = parts.port or (443 if parts.scheme == "https" else 80)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if host in ("", "0.0.0.0", "localhost"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        self.kind = kind
        self.target = f"{host}:{port}"
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
            "User-Agent: tts-ops-manual\r\n\r\n"
        ).encode()
        self.deadline = time.monotonic() + timeout
        self.stage = "connect"
        self.buf = b""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.result: tuple[bool, str] | None = None
        err = self.sock.connect_ex((host, port))
        if err not in (0, errno.EINPROGRESS):
            self._finish(False, os.strerror(err).lower())

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def wants_write(self) -> bool:
        return self.stage == "connect"

    def step(self) -> tuple[bool, str] | None:
        try:
            if self.stage == "connect":
                err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    return self._finish(False, os.strerror(err).lower())
                if self.kind == "tcp":
                    return self._finish(True, "connected")
                self.sock.send(self.request)
                self.stage = "read"
                return None
            data = self.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            return self._finish(False, (exc.strerror or str(exc)).lower())
        self.buf += data
        if b"\r\n" in self.buf:
            line = self.buf.split(b"\r\n", 1)[0].split()
            try:
                code = int(line[1])
            except (IndexError, ValueError):
                return self._finish(False, "not an HTTP response")
            return self._finish(200 <= code < 300, f"HTTP {code}")
        if not data:
            return self._finish(False, "connection closed without a response")
        return None

    def expire(self) -> tuple[bool, str]:
        return self._finish(False, "timed out")

    def _finish(self, ok: bool, detail: str) -> tuple[bool, str]:
        self.result = (ok, f"{self.kind} {self.target}: {detail}")
        self.close()
        return self.result

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self.sock.close()
